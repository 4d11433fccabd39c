//! Exporting traces (feature `otel`): with `--otlp URL`, or one of the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! variables, the spans conveyor makes (see `conveyor::otel`) go to an OTLP
//! collector over HTTP with protobuf bodies, in batches from a thread of
//! their own. Installed before the async runtime starts and shut down (the
//! last batch flushed) after it ends.

use anyhow::Context as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The installed provider, if traces are exported.
pub struct Telemetry(Option<SdkTracerProvider>);

/// The traces path of an OTLP/HTTP endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// The URL spans are posted to, from `--otlp`'s base URL.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_string()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// True when the standard variables ask for an export.
fn env_asks() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Installs the global tracer provider when an export is asked for.
pub fn init(otlp: Option<&str>) -> anyhow::Result<Telemetry> {
    if otlp.is_none() && !env_asks() {
        return Ok(Telemetry(None));
    }
    let mut builder = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(url) = otlp {
        // An explicit URL; otherwise the exporter reads the variables itself.
        builder = builder.with_endpoint(traces_url(url));
    }
    let exporter = builder.build().context("building the OTLP exporter")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("conveyor").build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Telemetry(Some(provider)))
}

impl Telemetry {
    /// Sends what is left and stops the export.
    pub fn shutdown(self) {
        if let Some(provider) = self.0 {
            if let Err(e) = provider.shutdown() {
                eprintln!("conveyor: exporting the last traces failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(
            traces_url("http://h:4318/v1/traces"),
            "http://h:4318/v1/traces"
        );
    }
}
