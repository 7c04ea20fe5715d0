#!/usr/bin/env python3
"""Interoperability test: Stela's MQTT extension with Eclipse Paho's Python client (paho-mqtt).

Usage: paho_mqtt_test.py SERVICE_URL MQTT_URL

SERVICE_URL is the SensorThings service root, e.g. http://127.0.0.1:8080/v1.1 (a URL without a
version segment gets /v1.1 appended); MQTT_URL is the broker, e.g. mqtt://127.0.0.1:1883.

Over HTTP (the standard library's urllib) the script creates a Thing with a Location and a
Datastream. With paho-mqtt (MQTT 3.1.1) one client subscribes to
v1.1/Datastreams(<id>)/Observations (QoS 1) and to v1.1/Observations?$select=result (QoS 0),
and another publishes Observations to v1.1/Datastreams(<id>)/Observations, alternately at QoS 0
and QoS 1. Every Observation must come back exactly once on each subscription: on the first as
the full entity, equal to what GET Observations(<id>) answers (with @iot.id and @iot.selfLink),
on the second as {"result": <value>} and nothing else. Finally the Observations must be listed
over HTTP with the ids the notifications carried. Then a paho-mqtt client speaking MQTT 5
subscribes, publishes an Observation (PUBACK reason code 0, notified) and an invalid payload
(PUBACK reason code 0x99, payload format invalid).

Exits 0 when every check holds, 1 with a message naming the first mismatch, 2 on bad usage.
Every wait has a timeout, and the whole run is stopped after RUN_TIMEOUT seconds. It deletes what
it created, so it can also run against a server that holds other data.
"""

import json
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import paho.mqtt
import paho.mqtt.client as mqtt

# Results of the Observations published, in publishing order; even indexes go at QoS 0, odd
# ones at QoS 1. Distinct values, so that each notification names the Observation it is for.
RESULTS = [21.5, 22.25, 23.0, 24.75, 25.5, 26.125]
HTTP_TIMEOUT = 10  # seconds per HTTP request
MQTT_TIMEOUT = 10  # seconds for CONNACK, SUBACK, PUBACK and for the notifications to arrive
QUIET = 1.0  # seconds without a further message before no duplicate is taken as none
RUN_TIMEOUT = 120  # seconds for the whole test


class Mismatch(Exception):
    """The server answered, but not as SensorThings API 1.1 and its MQTT extension say."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def phenomenon_time(index):
    return f"2026-02-01T00:{index:02d}:00Z"


def service_root(argument):
    root = argument.rstrip("/")
    if not root.rsplit("/", 1)[-1].startswith("v1."):
        root += "/v1.1"
    return root


def broker_address(argument):
    url = urllib.parse.urlsplit(argument)
    if url.scheme not in ("mqtt", "tcp") or not url.hostname:
        raise ValueError(f"not an mqtt:// URL: {argument}")
    return url.hostname, url.port or 1883


# --- HTTP ---------------------------------------------------------------------------------------


class Http:
    """Minimal JSON over HTTP for the set-up, the checks and the clean-up."""

    def __init__(self, root):
        self.root = root
        # No proxy: the server is local, whatever the environment says.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method, path, body=None):
        """Returns (status, headers, JSON body or None); HTTP errors are returned, not raised."""
        url = path if path.startswith("http") else f"{self.root}/{path}"
        # Percent-encode what a URL cannot hold as is (the spaces of $orderby, …).
        url = urllib.parse.quote(url, safe="/:?&=$(),'@%")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=HTTP_TIMEOUT) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise Mismatch(f"{method} {url}: cannot talk to the server: {error}") from error
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            document = None
        return status, headers, document

    def get(self, path):
        status, _, document = self.request("GET", path)
        check(status == 200, f"GET {path} answered {status}: {document}")
        return document

    def create(self, path, body):
        """POSTs `body` and returns the new entity's id (from the Location header)."""
        status, headers, document = self.request("POST", path, body)
        check(status == 201, f"POST {path} answered {status}, expected 201: {document}")
        location = headers.get("Location", "")
        check(location.endswith(")") and "(" in location, f"POST {path}: Location header is {location!r}")
        return int(location.rsplit("(", 1)[1].rstrip(")"))

    def delete_quietly(self, path):
        try:
            self.request("DELETE", path)
        except Mismatch:
            pass


def create_fixture(http):
    """A Thing with a Location and a Datastream; returns (thing id, Datastream id)."""
    thing = http.create(
        "Things",
        {
            "name": "paho interop thing",
            "description": "created by tests/interop/paho_mqtt_test.py",
            "properties": {"purpose": "interop"},
            "Locations": [
                {
                    "name": "paho interop location",
                    "description": "a field",
                    "encodingType": "application/geo+json",
                    "location": {"type": "Point", "coordinates": [8.5, 49.5]},
                }
            ],
            "Datastreams": [
                {
                    "name": "paho interop datastream",
                    "description": "air temperature, published with paho-mqtt",
                    "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                    "unitOfMeasurement": {
                        "name": "degree Celsius",
                        "symbol": "degC",
                        "definition": "http://unitsofmeasure.org/ucum.html#para-30",
                    },
                    "Sensor": {
                        "name": "paho interop sensor",
                        "description": "a thermometer",
                        "encodingType": "application/pdf",
                        "metadata": "http://example.org/thermometer.pdf",
                    },
                    "ObservedProperty": {
                        "name": "air temperature",
                        "definition": "http://vocab.nerc.ac.uk/collection/P07/current/CFSN0023/",
                        "description": "temperature of the air",
                    },
                }
            ],
        },
    )
    datastreams = http.get(f"Things({thing})/Datastreams")["value"]
    check(len(datastreams) == 1, f"Things({thing})/Datastreams lists {len(datastreams)}, expected 1")
    return thing, datastreams[0]["@iot.id"]


def clean_up(http, thing, datastream):
    """Deletes the Thing (its Datastream and Observations go with it) and what outlives it."""
    leftovers = []
    try:
        status, _, expanded = http.request(
            "GET", f"Datastreams({datastream})?$expand=Sensor,ObservedProperty,Observations/FeatureOfInterest"
        )
        if status == 200:
            leftovers += [f"Sensors({expanded['Sensor']['@iot.id']})"]
            leftovers += [f"ObservedProperties({expanded['ObservedProperty']['@iot.id']})"]
            features = {o["FeatureOfInterest"]["@iot.id"] for o in expanded.get("Observations", [])}
            leftovers += [f"FeaturesOfInterest({feature})" for feature in sorted(features)]
        status, _, locations = http.request("GET", f"Things({thing})/Locations")
        if status == 200:
            leftovers += [f"Locations({location['@iot.id']})" for location in locations["value"]]
    except (Mismatch, KeyError, TypeError):
        pass
    for path in [f"Things({thing})", *leftovers]:
        http.delete_quietly(path)


# --- MQTT ---------------------------------------------------------------------------------------


class PahoClient:
    """A paho-mqtt client running its network loop in a thread, with waits that time out."""

    def __init__(self, client_id, host, port, protocol=mqtt.MQTTv311):
        self.client_id = client_id
        self.messages = queue.Queue()  # (topic, payload bytes, QoS) of each PUBLISH received
        self.connected = threading.Event()
        self.connect_result = None
        self.subacks = queue.Queue()  # (mid, [granted QoS or 0x80])
        self.pubacks = queue.Queue()  # (mid, reason code) of each acknowledged PUBLISH
        # MQTT 5 has no clean session flag (clean start is given to connect()).
        clean = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            **clean,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as error:
            raise Mismatch(f"{client_id}: cannot connect to mqtt://{host}:{port}: {error}") from error
        self.client.loop_start()
        check(self.connected.wait(MQTT_TIMEOUT), f"{client_id}: no CONNACK within {MQTT_TIMEOUT} s")
        check(
            not self.connect_result.is_failure,
            f"{client_id}: the broker refused the connection: {self.connect_result}",
        )

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connect_result = reason_code
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subacks.put((mid, [code.value for code in reason_codes]))

    def _on_message(self, client, userdata, message):
        self.messages.put((message.topic, bytes(message.payload), message.qos))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.pubacks.put((mid, reason_code.value))

    def puback_codes(self, count):
        """The reason codes of the next `count` acknowledged PUBLISHes, by message id."""
        codes = {}
        for _ in range(count):
            try:
                mid, code = self.pubacks.get(timeout=MQTT_TIMEOUT)
            except queue.Empty:
                raise Mismatch(f"{self.client_id}: {len(codes)} of {count} PUBACKs within {MQTT_TIMEOUT} s") from None
            codes[mid] = code
        return codes

    def subscribe(self, topics):
        """Subscribes to [(topic, QoS)] in one SUBSCRIBE; returns the granted QoS per topic."""
        result, mid = self.client.subscribe(topics)
        check(
            result == mqtt.MQTT_ERR_SUCCESS,
            f"{self.client_id}: SUBSCRIBE not sent: {mqtt.error_string(result)}",
        )
        try:
            acked_mid, granted = self.subacks.get(timeout=MQTT_TIMEOUT)
        except queue.Empty:
            raise Mismatch(f"{self.client_id}: no SUBACK within {MQTT_TIMEOUT} s") from None
        check(acked_mid == mid, f"{self.client_id}: SUBACK for message id {acked_mid}, expected {mid}")
        return granted

    def publish(self, topic, payload, qos):
        info = self.client.publish(topic, payload, qos=qos)
        check(
            info.rc == mqtt.MQTT_ERR_SUCCESS,
            f"{self.client_id}: PUBLISH not sent: {mqtt.error_string(info.rc)}",
        )
        return info

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def collect(subscriber, expected_per_topic):
    """Messages by topic: waits until each topic has its expected number, then a moment more so
    that duplicates would be seen."""
    received = {topic: [] for topic in expected_per_topic}
    deadline = time.monotonic() + MQTT_TIMEOUT
    quiet_until = None
    while True:
        complete = all(len(received[t]) >= n for t, n in expected_per_topic.items())
        if complete and quiet_until is None:
            quiet_until = time.monotonic() + QUIET
        until = quiet_until if complete else deadline
        remaining = until - time.monotonic()
        if remaining <= 0:
            break
        try:
            topic, payload, qos = subscriber.messages.get(timeout=remaining)
        except queue.Empty:
            break
        check(topic in received, f"a notification on a topic not subscribed to: {topic!r}: {payload[:200]!r}")
        received[topic].append((payload, qos))
    for topic, expected in expected_per_topic.items():
        got = len(received[topic])
        check(
            got == expected,
            f"{topic}: {got} notifications within {MQTT_TIMEOUT} s, expected {expected} "
            f"(one per Observation published)",
        )
    return received


def decode(topic, payload):
    try:
        document = json.loads(payload)
    except ValueError:
        raise Mismatch(f"{topic}: the payload is not JSON: {payload[:200]!r}") from None
    check(isinstance(document, dict), f"{topic}: the payload is not a JSON object: {document!r}")
    return document


def check_full_entities(http, topic, messages, qos):
    """The Datastream's Observations topic: full entities, equal to HTTP's, one per result."""
    by_result = {}
    for payload, received_qos in messages:
        check(received_qos == qos, f"{topic}: a notification arrived at QoS {received_qos}, granted {qos}")
        entity = decode(topic, payload)
        observation_id = entity.get("@iot.id")
        check(isinstance(observation_id, int), f"{topic}: no integer @iot.id in {entity}")
        self_link = f"{http.root}/Observations({observation_id})"
        check(
            entity.get("@iot.selfLink") == self_link,
            f"{topic}: @iot.selfLink is {entity.get('@iot.selfLink')!r}, expected {self_link!r}",
        )
        for link in ("Datastream@iot.navigationLink", "FeatureOfInterest@iot.navigationLink"):
            check(link in entity, f"{topic}: the notification has no {link}: {entity}")
        result = entity.get("result")
        check(result in RESULTS, f"{topic}: result {result!r} was not published")
        check(result not in by_result, f"{topic}: the Observation with result {result} came twice")
        index = RESULTS.index(result)
        check(
            str(entity.get("phenomenonTime", "")).startswith(phenomenon_time(index)[:-1]),
            f"{topic}: phenomenonTime is {entity.get('phenomenonTime')!r}, "
            f"published {phenomenon_time(index)}",
        )
        over_http = http.get(f"Observations({observation_id})")
        check(
            entity == over_http,
            f"{topic}: the notification differs from GET Observations({observation_id}):\n"
            f"  mqtt: {json.dumps(entity, sort_keys=True)}\n  http: {json.dumps(over_http, sort_keys=True)}",
        )
        by_result[result] = observation_id
    return by_result


def check_selected(topic, messages, qos):
    """The $select=result topic: exactly {"result": value}, one per result."""
    seen = []
    for payload, received_qos in messages:
        check(received_qos == qos, f"{topic}: a notification arrived at QoS {received_qos}, granted {qos}")
        document = decode(topic, payload)
        check(
            set(document) == {"result"},
            f"{topic}: the notification has the members {sorted(document)}, "
            f"expected only ['result']: {document}",
        )
        check(document["result"] in RESULTS, f"{topic}: result {document['result']!r} was not published")
        seen.append(document["result"])
    check(sorted(seen) == sorted(RESULTS), f"{topic}: results {sorted(seen)}, expected {sorted(RESULTS)}")


def check_over_http(http, datastream, ids_by_result):
    path = f"Datastreams({datastream})/Observations"
    listed = http.get(f"{path}?$orderby=phenomenonTime asc&$count=true&$top=100")
    check(
        listed.get("@iot.count") == len(RESULTS),
        f"{path} has @iot.count {listed.get('@iot.count')!r}, expected {len(RESULTS)}",
    )
    results = [observation["result"] for observation in listed["value"]]
    check(results == RESULTS, f"{path} lists results {results}, expected {RESULTS}")
    ids = [observation["@iot.id"] for observation in listed["value"]]
    expected_ids = [ids_by_result[result] for result in RESULTS]
    check(ids == expected_ids, f"Observation ids over HTTP {ids}, the notifications carried {expected_ids}")


def check_mqtt5(client, on_datastream):
    """With paho-mqtt speaking MQTT 5: a subscription granted, a valid Observation acknowledged
    with reason code 0 and notified, an invalid payload refused with 0x99 (payload format
    invalid) in its PUBACK."""
    granted = client.subscribe([(on_datastream, 1)])
    check(granted == [1], f"MQTT 5 SUBACK granted {granted}, expected [1]")
    refused = client.publish(on_datastream, "{not json", qos=1)
    created = client.publish(on_datastream, json.dumps({"result": 99.5}), qos=1)
    codes = client.puback_codes(2)
    check(codes.get(refused.mid) == 0x99, f"MQTT 5 PUBACK of an invalid payload: {codes}, expected 0x99 (153)")
    check(codes.get(created.mid) == 0, f"MQTT 5 PUBACK of an Observation: {codes}, expected 0")
    try:
        topic, payload, qos = client.messages.get(timeout=MQTT_TIMEOUT)
    except queue.Empty:
        raise Mismatch(f"MQTT 5: no notification within {MQTT_TIMEOUT} s") from None
    check(topic == on_datastream, f"MQTT 5 notification on {topic!r}, expected {on_datastream!r}")
    check(decode(topic, payload).get("result") == 99.5, f"MQTT 5 notification {payload[:200]!r}")


def run(root, host, port):
    http = Http(root)
    thing, datastream = create_fixture(http)
    subscriber = publisher = v5 = None
    try:
        on_datastream = f"v1.1/Datastreams({datastream})/Observations"
        selected = "v1.1/Observations?$select=result"
        subscriber = PahoClient("stela-interop-paho-subscriber", host, port)
        granted = subscriber.subscribe([(on_datastream, 1), (selected, 0)])
        check(
            granted == [1, 0],
            f"SUBACK granted {granted}, expected [1, 0] for {on_datastream} and {selected}",
        )

        publisher = PahoClient("stela-interop-paho-publisher", host, port)
        pending = []
        for index, result in enumerate(RESULTS):
            body = {"result": result, "phenomenonTime": phenomenon_time(index)}
            pending.append(publisher.publish(on_datastream, json.dumps(body), qos=index % 2))
        for index, info in enumerate(pending):
            info.wait_for_publish(timeout=MQTT_TIMEOUT)
            check(
                info.is_published(),
                f"Observation {index} (QoS {index % 2}) was not "
                f"{'acknowledged' if index % 2 else 'sent'} within {MQTT_TIMEOUT} s",
            )

        received = collect(subscriber, {on_datastream: len(RESULTS), selected: len(RESULTS)})
        ids_by_result = check_full_entities(http, on_datastream, received[on_datastream], qos=1)
        check_selected(selected, received[selected], qos=0)
        check_over_http(http, datastream, ids_by_result)
        v5 = PahoClient("stela-interop-paho-v5", host, port, protocol=mqtt.MQTTv5)
        check_mqtt5(v5, on_datastream)
    finally:
        for client in (publisher, subscriber, v5):
            if client is not None:
                client.close()
        clean_up(http, thing, datastream)


def on_alarm(signum, frame):
    raise Mismatch(f"the test did not finish within {RUN_TIMEOUT} s")


def main(argv):
    if len(argv) != 3:
        print(
            f"usage: {argv[0]} SERVICE_URL MQTT_URL  (e.g. http://127.0.0.1:8080/v1.1 mqtt://127.0.0.1:1883)",
            file=sys.stderr,
        )
        return 2
    root = service_root(argv[1])
    try:
        host, port = broker_address(argv[2])
    except ValueError as error:
        print(f"usage: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(RUN_TIMEOUT)
    try:
        run(root, host, port)
    except Mismatch as mismatch:
        print(f"FAIL: {mismatch}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    print(f"ok: paho-mqtt {paho.mqtt.__version__} against mqtt://{host}:{port} and {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
