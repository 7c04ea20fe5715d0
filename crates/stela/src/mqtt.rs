//! Starting the MQTT extension for `stela serve`, as configured: the embedded broker, a
//! bridge to an external broker, or nothing.
//!
//! A taken MQTT address does not stop the server: the error says so plainly (naming
//! `--mqtt-listen`), `/health` reports the broker as failed, and HTTP is served without MQTT.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stela_mqtt::{
    AllowAll, Authenticator, Bridge, BridgeOptions, Broker, BrokerOptions, Metrics,
    StaticCredentials,
};
use stela_server::HealthProvider;
use stela_service::Service;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{MqttConfig, MqttMode};

/// How long the MQTT side may take to close its connections at shutdown.
const MQTT_STOP_GRACE: Duration = Duration::from_secs(10);

/// The MQTT side once started.
#[derive(Debug, Default)]
pub struct RunningMqtt {
    /// Endpoints advertised in `serverSettings`; empty when MQTT does not run.
    pub endpoints: Vec<String>,
    /// The report shown by `/health`.
    pub health: Option<Arc<dyn HealthProvider>>,
    /// The line announced on stdout before the HTTP one (`stela mqtt listening on …`).
    pub announcement: Option<String>,
    task: Option<JoinHandle<()>>,
}

impl RunningMqtt {
    /// Waits (boundedly) for the broker or bridge to finish after the stop signal.
    pub async fn stopped(self) {
        if let Some(task) = self.task
            && tokio::time::timeout(MQTT_STOP_GRACE, task).await.is_err()
        {
            tracing::warn!("the mqtt side did not stop in time");
        }
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stop_signal(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Starts MQTT as `config` says; links in payloads use `http_base_url`; the ingest journal
/// lives in `journal_dir`.
pub async fn start(
    config: &MqttConfig,
    service: &Service,
    journal_dir: &Path,
    http_base_url: &str,
    public_url: Option<&str>,
    stop: watch::Receiver<bool>,
) -> RunningMqtt {
    match &config.mode {
        MqttMode::Off => {
            tracing::info!("mqtt is off");
            RunningMqtt::default()
        }
        MqttMode::Embedded(addr) => {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                Err(error) => return address_unavailable(*addr, &error),
            };
            let local = listener.local_addr().unwrap_or(*addr);
            let auth: Arc<dyn Authenticator> = match &config.credentials {
                Some(credentials) => Arc::new(StaticCredentials::new(
                    credentials.username.clone(),
                    credentials.password.clone(),
                )),
                None => Arc::new(AllowAll),
            };
            let mut options = BrokerOptions::new(http_base_url.to_owned());
            options.journal_dir = Some(journal_dir.to_owned());
            let broker = Broker::new(service.clone(), options, auth);
            let metrics = broker.metrics();
            let task = tokio::spawn(async move {
                if let Err(error) = broker.run(listener, stop_signal(stop)).await {
                    tracing::error!(%error, "the mqtt broker failed");
                }
            });
            tracing::info!(address = %local, anonymous = config.credentials.is_none(), "mqtt broker listening");
            let endpoint = advertised_endpoint(local, public_url);
            RunningMqtt {
                endpoints: vec![endpoint],
                health: Some(metrics),
                announcement: Some(format!("stela mqtt listening on mqtt://{local}")),
                task: Some(task),
            }
        }
        MqttMode::External(url) => {
            let mut options = BridgeOptions::new(url.clone(), http_base_url.to_owned());
            options.journal_dir = Some(journal_dir.to_owned());
            options.credentials = config
                .credentials
                .as_ref()
                .map(|credentials| (credentials.username.clone(), credentials.password.clone()));
            let bridge = match Bridge::new(service.clone(), options) {
                Ok(bridge) => bridge,
                // The URL was validated with the configuration.
                Err(error) => {
                    tracing::error!(%error, "mqtt bridge not started");
                    return RunningMqtt::default();
                }
            };
            let metrics = bridge.metrics();
            let task = tokio::spawn(bridge.run(stop_signal(stop)));
            tracing::info!(broker = %url, "mqtt via an external broker");
            RunningMqtt {
                endpoints: vec![url.clone()],
                health: Some(metrics),
                announcement: None,
                task: Some(task),
            }
        }
    }
}

/// The embedded broker cannot listen: say so plainly and carry on without it.
fn address_unavailable(addr: SocketAddr, error: &std::io::Error) -> RunningMqtt {
    let taken = error.kind() == std::io::ErrorKind::AddrInUse;
    let cause = if taken {
        "the address is already in use (is another MQTT broker running there?)".to_owned()
    } else {
        error.to_string()
    };
    let message = format!(
        "cannot listen for MQTT on {addr}: {cause}. Serving HTTP without MQTT. Choose another \
         address with --mqtt-listen ADDR (or STELA_MQTT_LISTEN, or `listen` under [mqtt]), \
         switch MQTT off with --mqtt-listen off, or use the broker there with \
         --mqtt-broker mqtt://{addr}"
    );
    tracing::error!("{message}");
    let health: Arc<dyn HealthProvider> = Arc::new(Metrics::failed(message));
    RunningMqtt { health: Some(health), ..RunningMqtt::default() }
}

/// `mqtt://ADDR`, with the public URL's host when the broker listens on all interfaces.
fn advertised_endpoint(local: SocketAddr, public_url: Option<&str>) -> String {
    if local.ip().is_unspecified()
        && let Some(host) = public_url.and_then(url_host)
    {
        return format!("mqtt://{host}:{}", local.port());
    }
    format!("mqtt://{local}")
}

/// The host of `scheme://host[:port][/path]`.
fn url_host(url: &str) -> Option<&str> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => authority,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_endpoint_uses_the_public_host_for_wildcard_addresses() {
        let any: SocketAddr = "0.0.0.0:1883".parse().expect("address");
        let local: SocketAddr = "127.0.0.1:1884".parse().expect("address");
        assert_eq!(
            advertised_endpoint(any, Some("https://sta.example.org/api")),
            "mqtt://sta.example.org:1883"
        );
        assert_eq!(advertised_endpoint(any, Some("http://[::1]:8080")), "mqtt://[::1]:1883");
        assert_eq!(advertised_endpoint(any, None), "mqtt://0.0.0.0:1883");
        assert_eq!(
            advertised_endpoint(local, Some("https://sta.example.org")),
            "mqtt://127.0.0.1:1884"
        );
    }
}
