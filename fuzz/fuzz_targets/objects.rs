//! Every object reader, with every version's layout, over a page of
//! arbitrary memory (words that look like offsets into the page are turned
//! into pointers into it, so objects chain into each other).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyrometer_cpython::debug_offsets::DebugOffsets;
use pyrometer_cpython::discover::layout_for;
use pyrometer_cpython::layout::{Layout, Version};
use pyrometer_cpython::{debug_offsets, objects, synthetic};
use pyrometer_process::ImageMemory;

const BASE: u64 = 0x7f00_0000_0000;

fn layouts() -> &'static [Layout] {
    static L: std::sync::OnceLock<Vec<Layout>> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let mut out: Vec<Layout> = (8..=13)
            .filter_map(|m| Layout::for_version(Version::new(3, m, 0)))
            .collect();
        for m in [14, 15] {
            let values = synthetic::debug_values(m).unwrap_or_default();
            let table = debug_offsets::encode(Version::new(3, m, 0), false, &values);
            if let Ok(Some(d)) = DebugOffsets::parse(&table) {
                out.extend(layout_for(Version::new(3, m, 0), Some(&d)));
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&start, rest)) = data.split_first() else {
        return;
    };
    let mut page: Vec<u8> = rest.iter().copied().take(4096).collect();
    page.resize(page.len().next_multiple_of(8).max(8), 0);
    // Small values with the top bit set become pointers into the page.
    for w in page.chunks_exact_mut(8) {
        let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
        if v >> 60 == 0xf && (v & 0xffff) < 4096 {
            w.copy_from_slice(&(BASE + (v & 0xfff8)).to_le_bytes());
        }
    }
    let len = page.len() as u64;
    let mut mem = ImageMemory::new();
    mem.insert(BASE, page);
    let obj = BASE + (u64::from(start) * 8) % len;
    for l in layouts() {
        let _ = objects::type_name(&mem, l, obj);
        let _ = objects::read_str(&mem, l, obj, 4096);
        let _ = objects::read_bytes(&mem, l, obj, 4096);
        let _ = objects::read_int_value(&mem, l, obj, objects::DEFAULT_MAX_INT_DIGITS);
        let _ = objects::read_float(&mem, l, obj);
        let _ = objects::tuple_items(&mem, l, obj, 1024);
        let _ = objects::list_items(&mem, l, obj, 1024);
        let _ = objects::dict_items(&mem, l, obj, 1024);
        let _ = objects::dict_get_str(&mem, l, obj, "PATH_INFO");
        let _ = objects::instance_attrs(&mem, l, obj, 64);
        let _ = objects::get_attr(&mem, l, obj, "_name");
        let r = objects::render_value(&mem, l, obj, objects::RENDER_MAX);
        assert!(r.chars().count() <= objects::RENDER_MAX);
    }
});
