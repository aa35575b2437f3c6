//! Allocation samples (`record --memory`) in the pprof: sample types
//! `alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`,
//! `inuse_space/bytes` after the time ones, one side-channel sample per
//! allocation site (time values 0; time samples get 0 for these), labels
//! `endpoint` and `memory_site` ("attributed" or "stack not read"). `go
//! tool pprof -sample_index=alloc_space` and Pyroscope read them as memory
//! profiles.
//!
//! So that `report` renders what `record` did, each site also carries its
//! estimates unrounded (string labels `alloc_bytes`, `alloc_objects`,
//! `live_bytes`, `live_objects`, `live_series`: live bytes per bucket,
//! comma-separated; number label `alloc_samples`), and comments
//! `pyrometer.alloc_*` the profile-wide facts (sampling mean, bucket width,
//! unattributed bytes, untracked blocks, bytes per process).

use std::collections::BTreeMap;
use std::time::Duration;

use pyrometer_profile::{AllocationSite, FrameId, FrameInfo, Profile, SiteStats};

use super::side::{Labels, SideSample, ALLOCATION_LABEL};
use super::{proto, Strings};

pub(super) const TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Most live-series values read per site (the recorder keeps 128).
const MAX_SERIES: usize = 4096;

/// Add the memory sample types when the profile has them, and return
/// its allocation samples (the other samples get 0 for these types).
pub(super) fn append(
    profile: &Profile,
    st: &mut Strings,
    sample_type: &mut Vec<proto::ValueType>,
    location_of: &mut dyn FnMut(&mut Strings, FrameId) -> u64,
) -> Vec<proto::Sample> {
    let a = profile.allocations();
    let mut samples = Vec::new();
    if !a.enabled {
        return samples;
    }
    let time_values = sample_type.len();
    for (t, unit) in TYPES {
        sample_type.push(proto::ValueType {
            r#type: st.get(t),
            unit: st.get(unit),
        });
    }
    let mut sites: Vec<_> = a.sites().collect();
    sites.sort_by_key(|(k, _)| **k);
    for (site, stats) in sites {
        let location_id: Vec<u64> = profile
            .stack_frames(site.stack)
            .iter()
            .rev()
            .map(|fid| location_of(st, *fid))
            .collect();
        let kind = if site.stack.is_some() {
            "attributed"
        } else {
            "stack not read"
        };
        let mut side = SideSample::marked(st, ALLOCATION_LABEL, kind);
        if let Some(e) = site.endpoint {
            side.str(st, "endpoint", profile.str(e));
        }
        let series: Vec<String> = stats.live_series.iter().map(f64::to_string).collect();
        side.num(
            st,
            "alloc_samples",
            i64::try_from(stats.samples).unwrap_or(i64::MAX),
            "",
        )
        .str(st, "alloc_bytes", &stats.alloc_bytes.to_string())
        .str(st, "alloc_objects", &stats.alloc_objects.to_string())
        .str(st, "live_bytes", &stats.live_bytes.to_string())
        .str(st, "live_objects", &stats.live_objects.to_string())
        .str(st, "live_series", &series.join(","));
        let mut value = vec![0; time_values];
        value.extend([
            stats.alloc_objects.round() as i64,
            stats.alloc_bytes.round() as i64,
            stats.live_objects.round() as i64,
            stats.live_bytes.round() as i64,
        ]);
        samples.push(side.finish(location_id, value));
    }
    samples
}

/// The profile-wide facts of the allocation profile, as comments.
pub(super) fn comments(profile: &Profile) -> Vec<(String, String)> {
    let a = profile.allocations();
    if !a.enabled {
        return Vec::new();
    }
    let mut out = vec![
        ("alloc_mean_bytes".to_string(), a.mean_bytes.to_string()),
        (
            "alloc_bucket_ns".to_string(),
            a.bucket_width().as_nanos().to_string(),
        ),
        (
            "alloc_unattributed_bytes".to_string(),
            a.unattributed_bytes.to_string(),
        ),
        (
            "alloc_untracked_blocks".to_string(),
            a.untracked_blocks.to_string(),
        ),
    ];
    for (pid, bytes) in &a.by_process {
        out.push((format!("alloc_by_process.{pid}"), bytes.to_string()));
    }
    out
}

/// An allocation site of the file.
pub(super) struct SavedSite {
    attributed: bool,
    endpoint: Option<String>,
    frames: Vec<FrameInfo>,
    stats: SiteStats,
}

/// Where the allocation values are among a sample's values.
pub(super) fn value_indices(type_names: &[(&str, &str)]) -> [Option<usize>; 4] {
    TYPES.map(|t| type_names.iter().position(|n| *n == t))
}

impl SavedSite {
    /// A site from its sample: the unrounded labels pyrometer writes, else
    /// the sample's allocation values (another writer, an older pyrometer).
    pub(super) fn read(
        kind: &str,
        labels: &Labels,
        values: &[i64],
        indices: &[Option<usize>; 4],
        frames: Vec<FrameInfo>,
    ) -> Self {
        let value = |i: usize| {
            indices[i]
                .and_then(|i| values.get(i))
                .map_or(0.0, |v| *v as f64)
        };
        let exact = |key: &str, fallback: f64| {
            labels
                .str(key)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .unwrap_or(fallback)
        };
        let live_series = labels
            .str("live_series")
            .map(|v| {
                v.split(',')
                    .take(MAX_SERIES)
                    .map(|x| {
                        x.parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .unwrap_or(0.0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        SavedSite {
            attributed: kind == "attributed",
            endpoint: labels.str("endpoint").map(str::to_string),
            frames,
            stats: SiteStats {
                alloc_objects: exact("alloc_objects", value(0)),
                alloc_bytes: exact("alloc_bytes", value(1)),
                live_objects: exact("live_objects", value(2)),
                live_bytes: exact("live_bytes", value(3)),
                samples: labels
                    .num("alloc_samples")
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                live_series,
            },
        }
    }
}

/// Rebuild the allocation profile from the file's sites and comments.
pub(super) fn restore(
    profile: &mut Profile,
    sites: Vec<SavedSite>,
    facts: &BTreeMap<String, String>,
) {
    let mean = facts
        .get("alloc_mean_bytes")
        .and_then(|v| v.parse::<u64>().ok());
    if sites.is_empty() && mean.is_none() {
        return;
    }
    let f = |k: &str| {
        facts
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let mut restored = Vec::with_capacity(sites.len());
    for s in sites {
        let stack = if s.attributed {
            profile.intern_stack(&s.frames)
        } else {
            None
        };
        let endpoint = s.endpoint.as_deref().map(|e| profile.intern(e));
        restored.push((AllocationSite { stack, endpoint }, s.stats));
    }
    let a = profile.allocations_mut();
    a.enabled = true;
    a.mean_bytes = mean.unwrap_or(0);
    if let Some(ns) = facts
        .get("alloc_bucket_ns")
        .and_then(|v| v.parse::<u64>().ok())
    {
        a.set_bucket_width(Duration::from_nanos(ns));
    }
    a.unattributed_bytes = f("alloc_unattributed_bytes").unwrap_or(0.0);
    a.untracked_blocks = facts
        .get("alloc_untracked_blocks")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (k, v) in facts {
        if let (Some(pid), Ok(bytes)) = (
            k.strip_prefix("alloc_by_process.")
                .and_then(|p| p.parse::<i32>().ok()),
            v.parse::<f64>(),
        ) {
            a.by_process.insert(pid, bytes);
        }
    }
    for (site, stats) in restored {
        a.restore_site(site, stats);
    }
}
