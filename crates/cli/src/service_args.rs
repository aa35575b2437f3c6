//! `record` flags for long-running services: periodic rewrites of the
//! output, the timeline bound, and pushing to Grafana Pyroscope.

use clap::Args;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Rewrite the output every SECONDS while recording (atomically: a
    /// reader never sees half a file). SIGUSR1 rewrites it at once.
    #[arg(long, value_name = "SECONDS", value_parser = crate::args::seconds(0.05, crate::args::MAX_SECONDS))]
    pub write_every: Option<f64>,
    /// Samples kept in time order for -f chrometrace (the first N; later
    /// ones are counted and the trace says it was cut).
    #[arg(long, value_name = "N", default_value_t = pyrometer_profile::DEFAULT_TIMELINE_LIMIT)]
    pub timeline_samples: usize,
    /// Push a profile of the samples since the last push to this Grafana
    /// Pyroscope server (http://HOST:PORT or https://HOST[:PORT]) every
    /// --pyroscope-interval seconds.
    #[arg(long, value_name = "URL", requires = "app_name")]
    pub pyroscope: Option<String>,
    /// The application name: Pyroscope's `service_name` label.
    #[arg(long, value_name = "NAME")]
    pub app_name: Option<String>,
    /// A label of the pushed series, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// HTTP basic auth for Pyroscope, USER:PASSWORD (Grafana Cloud: stack
    /// user id and an access token).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub pyroscope_basic_auth: Option<String>,
    /// Tenant sent as X-Scope-OrgID (multi-tenant Pyroscope).
    #[arg(long, value_name = "ID")]
    pub pyroscope_tenant_id: Option<String>,
    /// PEM file of certificates to trust for an https:// Pyroscope, besides
    /// the system's (SSL_CERT_FILE also works): a private CA or a
    /// self-signed server.
    #[arg(long, value_name = "FILE")]
    pub pyroscope_ca: Option<std::path::PathBuf>,
    /// Seconds between two pushes.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = crate::args::seconds(0.1, 3600.0))]
    pub pyroscope_interval: f64,
}
