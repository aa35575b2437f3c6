//! Allocation samples (`record --memory`) in the pprof: sample types
//! `alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`,
//! `inuse_space/bytes` after the time ones, one sample per allocation site
//! (time values 0; time samples get 0 for these), labels `endpoint` and
//! `memory_site` ("attributed" or "stack not read"). `go tool pprof
//! -sample_index=alloc_space` and Pyroscope read them as memory profiles.

use pyrometer_profile::{FrameId, Profile};

use super::{proto, Strings};

/// Add the memory sample types and samples when the profile has them.
pub(super) fn append(
    profile: &Profile,
    st: &mut Strings,
    sample_type: &mut Vec<proto::ValueType>,
    samples: &mut Vec<proto::Sample>,
    location_of: &mut dyn FnMut(&mut Strings, FrameId) -> u64,
) {
    let a = profile.allocations();
    if !a.enabled {
        return;
    }
    let time_values = sample_type.len();
    for (t, unit) in [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ] {
        sample_type.push(proto::ValueType {
            r#type: st.get(t),
            unit: st.get(unit),
        });
    }
    for s in samples.iter_mut() {
        s.value.resize(time_values + 4, 0);
    }
    let k_endpoint = st.get("endpoint");
    let k_site = st.get("memory_site");
    let mut sites: Vec<_> = a.sites().collect();
    sites.sort_by_key(|(k, _)| **k);
    for (site, stats) in sites {
        let location_id: Vec<u64> = profile
            .stack_frames(site.stack)
            .iter()
            .rev()
            .map(|fid| location_of(st, *fid))
            .collect();
        let mut label = vec![proto::Label {
            key: k_site,
            str: st.get(if site.stack.is_some() {
                "attributed"
            } else {
                "stack not read"
            }),
            num: 0,
            num_unit: 0,
        }];
        if let Some(e) = site.endpoint {
            label.push(proto::Label {
                key: k_endpoint,
                str: st.get(profile.str(e)),
                num: 0,
                num_unit: 0,
            });
        }
        let mut value = vec![0; time_values];
        value.extend([
            stats.alloc_objects.round() as i64,
            stats.alloc_bytes.round() as i64,
            stats.live_objects.round() as i64,
            stats.live_bytes.round() as i64,
        ]);
        samples.push(proto::Sample {
            location_id,
            value,
            label,
        });
    }
}
