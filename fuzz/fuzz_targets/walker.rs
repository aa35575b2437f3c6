//! The whole stack walker over a synthetic 3.13–3.15 image (real-shaped
//! tables) mutated by the input: each 11-byte chunk picks an object of the
//! image (runtime, interpreter, thread states, frames, code objects), a
//! word in it and a new value. Must not panic; its loops are bounded.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pyrometer_cpython::discover::{layout_for, RuntimeSource, VersionSource};
use pyrometer_cpython::layout::Version;
use pyrometer_cpython::synthetic::{self, CodeSpec, FrameSpec, Image, ImageSpec, ThreadSpec};
use pyrometer_cpython::{debug_offsets, Interpreter, StackReader};
use pyrometer_process::{Memory, PageCache};

fn image(minor: u8) -> Image {
    let mut method = CodeSpec::new("Worker.run", "/srv/w.py", 40, &[(1, 0), (4, 1), (6, 2)]);
    method.argcount = 1;
    method.varnames = vec!["self".into(), "environ".into()];
    let mut spec = ImageSpec::new(Version::new(3, minor, 0));
    spec.codes = vec![
        method,
        CodeSpec::new("<module>", "/srv/main.py", 1, &[(2, 0), (10, 5)]),
    ];
    let entry = FrameSpec::Shim {
        owner: synthetic::OWNED_BY_INTERPRETER_OR_CSTACK,
        code: None,
    };
    spec.threads = vec![
        ThreadSpec {
            thread_id: 0x7f00_0000_1000,
            native_id: 101,
            frames: vec![FrameSpec::py(0, 3), entry, FrameSpec::py(1, 5), entry],
        },
        ThreadSpec {
            thread_id: 0x7f00_0000_2000,
            native_id: 100,
            frames: vec![FrameSpec::py(1, 2), entry],
        },
    ];
    spec.gil_holder = Some(1);
    synthetic::build(&spec)
}

struct Target {
    image: Image,
    interp: Interpreter,
    objects: Vec<u64>,
}

fn targets() -> &'static [Target] {
    static T: OnceLock<Vec<Target>> = OnceLock::new();
    T.get_or_init(|| {
        [13, 14, 15]
            .into_iter()
            .filter_map(|minor| {
                let image = image(minor);
                let d = debug_offsets::read(&image.memory, image.runtime).ok()??;
                let version = Version::from_hex(d.version);
                let layout = layout_for(version, Some(&d)).ok()?;
                let interp = Interpreter {
                    version,
                    layout,
                    runtime: image.runtime,
                    binary: PathBuf::from("<fuzz>"),
                    code_type: Some(image.code_type),
                    runtime_source: RuntimeSource::Symbol,
                    version_source: VersionSource::DebugOffsets,
                    heap: pyrometer_cpython::HeapLocation::Unavailable("synthetic image".into()),
                };
                let mut objects = vec![image.runtime, image.interp, image.code_type];
                objects.extend(&image.tstates);
                objects.extend(image.frames.iter().flatten());
                objects.extend(&image.codes);
                Some(Target {
                    image,
                    interp,
                    objects,
                })
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let all = targets();
    let Some(t) = all.get(usize::from(pick >> 1) % all.len().max(1)) else {
        return;
    };
    let mut mem = t.image.memory.clone();
    for chunk in rest.chunks_exact(11).take(16) {
        let obj = t.objects[usize::from(chunk[0]) % t.objects.len()];
        // Interpreter-state fields lie up to ~8 KiB in: words 0..2048.
        let word = u64::from(u16::from_le_bytes([chunk[1], chunk[2]]) % 2048);
        let addr = obj + 8 * word;
        let value = u64::from_le_bytes(chunk[3..11].try_into().unwrap_or_default());
        let mut probe = [0u8; 8];
        if mem.read(addr, &mut probe).is_ok() {
            mem.write(addr, &value.to_le_bytes());
        }
    }
    // Odd picks read through the page cache, as the sampler does.
    if pick & 1 == 1 {
        read_everything(StackReader::new(PageCache::new(&mem), t.interp.clone()));
    } else {
        read_everything(StackReader::new(&mem, t.interp.clone()));
    }
});

fn read_everything<M: Memory>(mut reader: StackReader<M>) {
    if let Ok(stacks) = reader.read_all_filtered(|_| true) {
        for st in &stacks {
            let _ = reader.request_of(st);
            for f in &st.frames {
                for (_, v) in reader.locals(f) {
                    let _ = reader.render(v);
                }
            }
        }
    }
    let _ = reader.read_all();
    let _ = reader.thread_names();
}
