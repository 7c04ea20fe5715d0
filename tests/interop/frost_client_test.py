#!/usr/bin/env python3
"""Interoperability test: drive a Stela server with FROST's Python client (frost-sta-client).

Usage: frost_client_test.py SERVICE_URL

SERVICE_URL is the SensorThings service root, e.g. http://127.0.0.1:8080/v1.1 (a URL without
a version segment gets /v1.1 appended). The script creates a Thing with a Location and a
Datastream (Sensor, ObservedProperty) by deep insert, posts 10 Observations, reads them back
with $filter/$orderby/$top/$count, pages through all of them by @iot.nextLink three at a time.
Then, through the client's MultiDatastream API, it creates a MultiDatastream on the Thing with
two ObservedProperties (a new one first, then one created before it and linked by id, so that
their order differs from their ids' order), posts Observations with array results, and reads
back the ObservedProperties (in the MultiDatastream's order, by navigation and by $expand) and
the results. Finally it deletes the Thing and checks that its Datastream, MultiDatastream and
their Observations are gone (404).

Exits 0 when every check holds, 1 with a message naming the first mismatch, 2 on bad usage.
It deletes what it created, so it can also run against a server that holds other data.
"""

import logging
import re
import sys

import frost_sta_client as fsc
import requests
from furl import furl

OBSERVATION_COUNT = 10
PAGE_SIZE = 3
FILTER_THRESHOLD = 4

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
# Array results of the MultiDatastream's Observations: [air temperature, relative humidity].
MULTI_RESULTS = [[20.5, 41.0], [21.25, 43.5], [19.75, 52.0]]
MULTI_UNITS = [
    {"name": "degree Celsius", "symbol": "degC", "definition": "http://unitsofmeasure.org/ucum.html#para-30"},
    {"name": "percent", "symbol": "%", "definition": "http://unitsofmeasure.org/ucum.html#para-29"},
]
MULTI_DATA_TYPES = [OM + "OM_Measurement", OM + "OM_Measurement"]
MULTI_PROPERTY_NAMES = ["air temperature", "relative humidity"]


class Mismatch(Exception):
    """The server answered, but not as SensorThings API 1.1 says it should."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def phenomenon_time(index):
    return f"2026-01-01T00:{index:02d}:00Z"


def same_number(actual, expected):
    return isinstance(actual, (int, float)) and not isinstance(actual, bool) and actual == expected


class CountingService(fsc.SensorThingsService):
    """A SensorThingsService that records each request it sends, to check paging."""

    def __init__(self, url):
        super().__init__(url)
        self.requests = []

    def execute(self, method, url, **kwargs):
        self.requests.append((method.upper(), str(url)))
        return super().execute(method, url, **kwargs)


def service_root(argument):
    root = argument.rstrip("/")
    if not root.rsplit("/", 1)[-1].startswith("v1."):
        root += "/v1.1"
    return root


def create_thing(service):
    unit = fsc.UnitOfMeasurement(
        name="degree Celsius",
        symbol="degC",
        definition="http://unitsofmeasure.org/ucum.html#para-30",
    )
    datastream = fsc.Datastream(
        name="interop datastream",
        description="air temperature, posted by frost-sta-client",
        observation_type="http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
        unit_of_measurement=unit,
        sensor=fsc.Sensor(
            name="interop sensor",
            description="a thermometer",
            encoding_type="application/pdf",
            metadata="http://example.org/thermometer.pdf",
        ),
        observed_property=fsc.ObservedProperty(
            name="air temperature",
            definition="http://vocab.nerc.ac.uk/collection/P07/current/CFSN0023/",
            description="temperature of the air",
        ),
    )
    location = fsc.Location(
        name="interop location",
        description="a field",
        encoding_type="application/geo+json",
        location={"type": "Point", "coordinates": [8.0, 50.0]},
    )
    thing = fsc.Thing(
        name="interop thing",
        description="created by tests/interop/frost_client_test.py",
        properties={"purpose": "interop"},
        locations=[location],
        datastreams=[datastream],
    )
    service.create(thing)
    check(thing.id is not None, "creating the Thing returned no id in the Location header")
    return thing


def the_datastream_of(thing):
    datastreams = list(thing.get_datastreams().query().list())
    check(
        len(datastreams) == 1,
        f"Things({thing.id})/Datastreams lists {len(datastreams)} Datastreams, expected 1",
    )
    datastream = datastreams[0]
    check(
        datastream.name == "interop datastream",
        f"the deep-inserted Datastream is named {datastream.name!r}",
    )
    return datastream


def post_observations(service, datastream):
    posted = []
    for index in range(OBSERVATION_COUNT):
        observation = fsc.Observation(
            result=index,
            phenomenon_time=phenomenon_time(index),
            # Only the id: a link to the existing Datastream, not a deep insert.
            datastream=fsc.Datastream(id=datastream.id),
        )
        service.create(observation)
        check(observation.id is not None, f"Observation {index} got no id in the Location header")
        posted.append(observation)
    check(
        len({observation.id for observation in posted}) == OBSERVATION_COUNT,
        "the server gave two Observations the same id",
    )
    return posted


def check_next_link(next_link, context):
    check(next_link, f"{context}: the first page has no @iot.nextLink")
    check(
        next_link.startswith("http://") or next_link.startswith("https://"),
        f"{context}: @iot.nextLink is not an absolute URL: {next_link}",
    )


def check_filtered_query(datastream):
    # result gt 4, newest first, two per page, with the total count.
    entities = (
        datastream.get_observations()
        .query()
        .filter(f"result gt {FILTER_THRESHOLD}")
        .orderby("phenomenonTime", "desc")
        .top(2)
        .count()
        .list()
    )
    expected_count = OBSERVATION_COUNT - FILTER_THRESHOLD - 1
    check(
        entities.count == expected_count,
        f"$filter=result gt {FILTER_THRESHOLD}&$count=true: @iot.count is {entities.count!r}, "
        f"expected {expected_count}",
    )
    first_page = [observation.result for observation in entities.entities]
    check(
        len(first_page) == 2 and all(same_number(a, e) for a, e in zip(first_page, [9, 8])),
        f"$orderby=phenomenonTime desc&$top=2: first page results are {first_page}, expected [9, 8]",
    )
    check_next_link(entities.next_link, "$top=2 of 5 matches")
    results = [observation.result for observation in entities]
    expected = list(range(OBSERVATION_COUNT - 1, FILTER_THRESHOLD, -1))
    check(
        len(results) == len(expected) and all(same_number(a, e) for a, e in zip(results, expected)),
        f"$filter=result gt {FILTER_THRESHOLD}&$orderby=phenomenonTime desc: results {results}, "
        f"expected {expected}",
    )


def check_paging(service, datastream, posted):
    service.requests.clear()
    entities = (
        datastream.get_observations()
        .query()
        .orderby("phenomenonTime", "asc")
        .top(PAGE_SIZE)
        .count()
        .list()
    )
    check(
        entities.count == OBSERVATION_COUNT,
        f"$count=true: @iot.count is {entities.count!r}, expected {OBSERVATION_COUNT}",
    )
    check(
        len(entities.entities) == PAGE_SIZE,
        f"$top={PAGE_SIZE}: the first page has {len(entities.entities)} Observations",
    )
    check_next_link(entities.next_link, f"$top={PAGE_SIZE} of {OBSERVATION_COUNT}")
    seen = list(entities)  # iterating follows @iot.nextLink until there is none
    results = [observation.result for observation in seen]
    check(
        len(results) == OBSERVATION_COUNT
        and all(same_number(a, e) for a, e in zip(results, range(OBSERVATION_COUNT))),
        f"paging by @iot.nextLink ({PAGE_SIZE} per page) gave results {results}, "
        f"expected {list(range(OBSERVATION_COUNT))}",
    )
    check(
        [observation.id for observation in seen] == [observation.id for observation in posted],
        "paging by @iot.nextLink returned other Observation ids than were created",
    )
    times = [observation.phenomenon_time for observation in seen]
    check(
        all(isinstance(time, str) and time.startswith(f"2026-01-01T00:{i:02d}:00") for i, time in enumerate(times)),
        f"phenomenonTime values read back as {times}",
    )
    pages = len([request for request in service.requests if request[0] == "GET"])
    expected_pages = -(-OBSERVATION_COUNT // PAGE_SIZE)
    check(
        pages == expected_pages,
        f"reading {OBSERVATION_COUNT} Observations {PAGE_SIZE} per page took {pages} GET requests, "
        f"expected {expected_pages}",
    )


def status_of(action):
    """The HTTP status `action` ends with: 200 when it returns, the error's status otherwise."""
    try:
        action()
    except requests.exceptions.HTTPError as error:
        return error.response.status_code
    return 200


def create_multi_datastream(service, thing, created):
    """A MultiDatastream on `thing` whose ObservedProperties are [new, existing by id]; returns
    it and the ObservedProperty created beforehand (also appended to `created`)."""
    # Created first, so it has the lower id but is the MultiDatastream's second ObservedProperty.
    humidity = fsc.ObservedProperty(
        name=MULTI_PROPERTY_NAMES[1],
        definition="http://vocab.nerc.ac.uk/collection/P07/current/CFSN0413/",
        description="relative humidity of the air",
    )
    service.create(humidity)
    check(humidity.id is not None, "creating an ObservedProperty returned no id in the Location header")
    created.append(humidity)
    units = [fsc.UnitOfMeasurement(**unit) for unit in MULTI_UNITS]
    multi = fsc.MultiDatastream(
        name="interop multidatastream",
        description="air temperature and humidity, posted by frost-sta-client",
        observation_type=OM + "OM_ComplexObservation",
        unit_of_measurements=units,
        multi_observation_data_types=list(MULTI_DATA_TYPES),
        thing=fsc.Thing(id=thing.id),
        sensor=fsc.Sensor(
            name="interop multi sensor",
            description="a thermo-hygrometer",
            encoding_type="application/pdf",
            metadata="http://example.org/thermo-hygrometer.pdf",
        ),
        observed_properties=[
            fsc.ObservedProperty(
                name=MULTI_PROPERTY_NAMES[0],
                definition="http://vocab.nerc.ac.uk/collection/P07/current/CFSN0023/",
                description="temperature of the air",
            ),
            fsc.ObservedProperty(id=humidity.id),
        ],
    )
    body = fsc.utils.transform_entity_to_json_dict(multi)
    if body.get("unitOfMeasurements") == MULTI_UNITS:
        service.create(multi)
    else:
        # Fallback to the client's raw HTTP service: frost-sta-client 1.1.53 cannot send
        # unitOfMeasurements. MultiDatastream.__getstate__ calls __getstate__() on the plain
        # Python list of units, which is None on Python 3.11+ (and missing before), so
        # service.create(multi) would POST "unitOfMeasurements": null. This POSTs the body the
        # client made, with the units it dropped, through the client's own
        # SensorThingsService.execute, and takes the id from the Location header as the client
        # does. The rest of the MultiDatastream test uses the client's API.
        body["unitOfMeasurements"] = [unit.__getstate__() for unit in units]
        url = furl(service.url)
        url.path.add("MultiDatastreams")
        response = service.execute("post", url, json=body)
        multi.id = fsc.utils.extract_value(response.headers["location"])
        multi.service = service
    check(multi.id is not None, "creating the MultiDatastream returned no id in the Location header")
    return multi, humidity


def related(dao, entity_id, *relations):
    """The entities `relations` of dao's entity `entity_id` link to (by $expand), to delete them
    at the end: Sensors, ObservedProperties and FeaturesOfInterest outlive the Thing."""
    listed = list(dao.query().filter(f"id eq {entity_id}").expand(",".join(relations)).list())
    found = []
    for relation in relations:
        for entity in listed[:1]:
            # The client's attribute for the relation: ObservedProperties -> observed_properties.
            value = getattr(entity, re.sub(r"(?<!^)(?=[A-Z])", "_", relation).lower())
            found += value.entities if isinstance(value, fsc.EntityList) else [value]
    return [entity for entity in found if entity is not None]


def check_multi_datastream(service, thing, multi, humidity):
    found = service.multi_datastreams().find(multi.id)
    check(found.name == "interop multidatastream", f"MultiDatastreams({multi.id}) is named {found.name!r}")
    check(
        found.observation_type == OM + "OM_ComplexObservation",
        f"MultiDatastreams({multi.id}) has observationType {found.observation_type!r}",
    )
    # The client reads unitOfMeasurements back as the JSON objects the server sent.
    units = [unit if isinstance(unit, dict) else unit.__getstate__() for unit in found.unit_of_measurements]
    check(
        units == MULTI_UNITS,
        f"MultiDatastreams({multi.id}) has unitOfMeasurements {units}, expected {MULTI_UNITS}",
    )
    check(
        found.multi_observation_data_types == MULTI_DATA_TYPES,
        f"MultiDatastreams({multi.id}) has multiObservationDataTypes {found.multi_observation_data_types}",
    )
    of_thing = [entity.id for entity in thing.get_multi_datastreams().query().list()]
    check(
        of_thing == [multi.id],
        f"Things({thing.id})/MultiDatastreams lists {of_thing}, expected [{multi.id}]",
    )

    # The order is the MultiDatastream's (the order of its result arrays), not the ids' order:
    # the second ObservedProperty was created first.
    properties = list(found.get_observed_properties().query().list())
    names = [observed_property.name for observed_property in properties]
    check(
        names == MULTI_PROPERTY_NAMES,
        f"MultiDatastreams({multi.id})/ObservedProperties lists {names}, expected {MULTI_PROPERTY_NAMES} "
        "(the order of the MultiDatastream's result arrays)",
    )
    check(
        properties[1].id == humidity.id and properties[0].id != humidity.id,
        f"MultiDatastreams({multi.id})/ObservedProperties has ids {[p.id for p in properties]}; the second "
        f"should be the linked ObservedProperties({humidity.id})",
    )
    expanded = list(
        service.multi_datastreams().query().filter(f"id eq {multi.id}").expand("ObservedProperties").list()
    )
    check(
        len(expanded) == 1,
        f"MultiDatastreams?$filter=id eq {multi.id} lists {len(expanded)}, expected 1",
    )
    expanded_names = [observed_property.name for observed_property in expanded[0].observed_properties or []]
    check(
        expanded_names == MULTI_PROPERTY_NAMES,
        f"MultiDatastreams?$expand=ObservedProperties gives {expanded_names}, "
        f"expected {MULTI_PROPERTY_NAMES}",
    )


def post_multi_observations(service, multi):
    posted = []
    for index, result in enumerate(MULTI_RESULTS):
        observation = fsc.Observation(
            result=list(result),
            phenomenon_time=phenomenon_time(30 + index),
            multi_datastream=fsc.MultiDatastream(id=multi.id),
        )
        service.create(observation)
        check(
            observation.id is not None,
            f"MultiDatastream Observation {index} got no id in the Location header",
        )
        posted.append(observation)
    # One value per ObservedProperty: a result of another width is refused.
    too_short = fsc.Observation(
        result=[1.0], phenomenon_time=phenomenon_time(59), multi_datastream=fsc.MultiDatastream(id=multi.id)
    )
    logging.disable(logging.ERROR)
    try:
        status = status_of(lambda: service.create(too_short))
    finally:
        logging.disable(logging.NOTSET)
    check(
        status == 400,
        f"an Observation with result [1.0] for a MultiDatastream of two answered {status}, "
        "expected 400",
    )
    return posted


def check_multi_observations(service, multi, posted):
    read = list(multi.get_observations().query().orderby("phenomenonTime", "asc").list())
    results = [observation.result for observation in read]
    check(
        len(results) == len(MULTI_RESULTS)
        and all(
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same_number(a, e) for a, e in zip(actual, expected))
            for actual, expected in zip(results, MULTI_RESULTS)
        ),
        f"MultiDatastreams({multi.id})/Observations has results {results}, expected {MULTI_RESULTS}",
    )
    check(
        [observation.id for observation in read] == [observation.id for observation in posted],
        f"MultiDatastreams({multi.id})/Observations returned other ids than were created",
    )
    one = service.observations().find(posted[0].id)
    check(
        isinstance(one.result, list)
        and len(one.result) == len(MULTI_RESULTS[0])
        and all(same_number(a, e) for a, e in zip(one.result, MULTI_RESULTS[0])),
        f"Observations({posted[0].id}) has result {one.result!r}, expected {MULTI_RESULTS[0]}",
    )


def check_delete_cascades(service, thing, datastream, posted, multi, multi_posted):
    service.delete(thing)
    gone = {
        f"Things({thing.id})": lambda: service.things().find(thing.id),
        f"Datastreams({datastream.id})": lambda: service.datastreams().find(datastream.id),
        f"Datastreams({datastream.id})/Observations": lambda: datastream.get_observations().query().list(),
        f"MultiDatastreams({multi.id})": lambda: service.multi_datastreams().find(multi.id),
        f"MultiDatastreams({multi.id})/Observations": lambda: multi.get_observations().query().list(),
    }
    for observation in [*posted, *multi_posted]:
        gone[f"Observations({observation.id})"] = (
            lambda observation_id=observation.id: service.observations().find(observation_id)
        )
    # The client logs every failed request; here failing with 404 is the expected outcome.
    logging.disable(logging.ERROR)
    try:
        statuses = {path: status_of(action) for path, action in gone.items()}
    finally:
        logging.disable(logging.NOTSET)
    for path, status in statuses.items():
        check(status == 404, f"after DELETE Things({thing.id}), GET {path} answers {status}, expected 404")


def clean_up(service, thing, others):
    """Deletes what the test created and still exists; Locations, Sensors and ObservedProperties
    outlive their Thing."""
    logging.disable(logging.ERROR)
    try:
        for entity in [thing, *others]:
            try:
                service.delete(entity)
            except requests.exceptions.RequestException:
                pass
    finally:
        logging.disable(logging.NOTSET)


def run(url):
    service = CountingService(url)
    thing = create_thing(service)
    others = []
    try:
        locations = list(thing.get_locations().query().list())
        others += locations
        check(len(locations) == 1, f"Things({thing.id})/Locations lists {len(locations)}, expected 1")
        datastream = the_datastream_of(thing)
        others += related(service.datastreams(), datastream.id, "Sensor", "ObservedProperty")
        posted = post_observations(service, datastream)
        others += related(service.observations(), posted[0].id, "FeatureOfInterest")
        check_filtered_query(datastream)
        check_paging(service, datastream, posted)
        multi, humidity = create_multi_datastream(service, thing, others)
        others += related(service.multi_datastreams(), multi.id, "Sensor", "ObservedProperties")
        check_multi_datastream(service, thing, multi, humidity)
        multi_posted = post_multi_observations(service, multi)
        check_multi_observations(service, multi, multi_posted)
        check_delete_cascades(service, thing, datastream, posted, multi, multi_posted)
    finally:
        clean_up(service, thing, others)


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} SERVICE_URL  (e.g. http://127.0.0.1:8080/v1.1)", file=sys.stderr)
        return 2
    url = service_root(argv[1])
    # The client logs failed requests itself; keep its messages, drop its debug chatter.
    logging.basicConfig(level=logging.WARNING, format="frost-sta-client: %(message)s")
    try:
        run(url)
    except Mismatch as mismatch:
        print(f"FAIL: {mismatch}", file=sys.stderr)
        return 1
    except requests.exceptions.HTTPError as error:
        response = error.response
        print(
            f"FAIL: {response.request.method} {response.url} answered {response.status_code}: "
            f"{response.text[:2000]}",
            file=sys.stderr,
        )
        return 1
    except requests.exceptions.RequestException as error:
        print(f"FAIL: cannot talk to {url}: {error}", file=sys.stderr)
        return 1
    print(f"ok: frost-sta-client {fsc.__version__} against {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
