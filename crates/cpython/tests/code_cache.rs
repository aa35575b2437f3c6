//! The code-object cache: a code object freed and its address reused by
//! another is noticed at the next 100 ms epoch, and the checks of an epoch
//! are made in one batched read, not one read per code object.
//!
//! Over a synthetic 3.13 image (the layout comes from its `_Py_DebugOffsets`,
//! as on a live process), whose memory the test changes between reads.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyrometer_cpython::discover::{layout_for, RuntimeSource, VersionSource};
use pyrometer_cpython::layout::Version;
use pyrometer_cpython::synthetic::{self, CodeSpec, FrameSpec, ImageSpec, ThreadSpec};
use pyrometer_cpython::{debug_offsets, Interpreter, StackReader};
use pyrometer_process::{ImageMemory, Memory, MemoryError};

/// An image the test can change under the reader, counting batched reads.
struct Mutable {
    image: RefCell<ImageMemory>,
    batches: Cell<u64>,
    batched_ranges: Cell<u64>,
}

impl Memory for Mutable {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.image.borrow().read(addr, buf)
    }
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        self.batches.set(self.batches.get() + 1);
        self.batched_ranges
            .set(self.batched_ranges.get() + reqs.len() as u64);
        self.image.borrow().read_many(reqs)
    }
    fn read_each_settled(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        self.read_each(reqs, read)
    }
}

fn build() -> (Mutable, Interpreter, Vec<u64>) {
    let (mem, interp, codes, _) = build_with_frames();
    (mem, interp, codes)
}

/// [`build`], with the frame addresses of the one thread (innermost first).
fn build_with_frames() -> (Mutable, Interpreter, Vec<u64>, Vec<u64>) {
    let version = Version {
        major: 3,
        minor: 13,
        micro: 0,
        level: 0xF,
    };
    let mut spec = ImageSpec::new(version);
    spec.codes = vec![
        CodeSpec::new("first", "/srv/a.py", 10, &[(4, 0), (4, 1)]),
        CodeSpec::new("second", "/srv/b.py", 20, &[(4, 0), (4, 1)]),
        CodeSpec::new("outer", "/srv/main.py", 1, &[(4, 0), (4, 1)]),
    ];
    let entry = FrameSpec::Shim {
        owner: synthetic::OWNED_BY_INTERPRETER_OR_CSTACK,
        code: None,
    };
    spec.threads = vec![ThreadSpec {
        thread_id: 0x7f00_0000_1000,
        native_id: 100,
        frames: vec![FrameSpec::py(0, 2), FrameSpec::py(2, 3), entry],
    }];
    spec.gil_holder = Some(0);
    let image = synthetic::build(&spec);
    let debug = debug_offsets::read(&image.memory, image.runtime)
        .expect("readable table")
        .expect("a table");
    let version = Version::from_hex(debug.version);
    let interp = Interpreter {
        version,
        layout: layout_for(version, Some(&debug)).expect("a layout"),
        runtime: image.runtime,
        binary: PathBuf::from("<image>"),
        code_type: Some(image.code_type),
        runtime_source: RuntimeSource::Symbol,
        version_source: VersionSource::DebugOffsets,
        heap: pyrometer_cpython::heap::HeapLocation::Unavailable("synthetic image".into()),
    };
    let mem = Mutable {
        image: RefCell::new(image.memory),
        batches: Cell::new(0),
        batched_ranges: Cell::new(0),
    };
    let frames = image.frames[0].clone();
    (mem, interp, image.codes, frames)
}

fn innermost(reader: &mut StackReader<&Mutable>) -> String {
    let threads = reader.read_all().expect("the image reads");
    threads[0].frames[0].name.to_string()
}

#[test]
fn a_reused_code_address_is_noticed_at_the_next_epoch_in_one_batched_check() {
    let (mem, interp, codes) = build();
    let layout = interp.layout.clone();
    let mut reader = StackReader::new(&mem, interp);
    assert_eq!(innermost(&mut reader), "first");

    // "first" is freed and "second" compiled at its address: its name, file
    // and qualified name pointers now are those of "second".
    {
        let mut image = mem.image.borrow_mut();
        let mut fields = vec![layout.code_name, layout.code_filename];
        fields.extend(layout.code_qualname);
        for off in fields {
            let mut b = [0u8; 8];
            image.read(codes[1] + off, &mut b).unwrap();
            image.write(codes[0] + off, &b);
        }
    }
    // Within an epoch the cached entry is trusted; by the next one (100 ms)
    // it is checked, found changed, and read again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let batches_before = mem.batches.get();
    let mut seen = innermost(&mut reader);
    while seen != "second" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = innermost(&mut reader);
    }
    assert_eq!(seen, "second", "the reused code address was never noticed");
    // The epoch's check of both code objects seen was one batched read.
    let batches = mem.batches.get() - batches_before;
    assert!(batches >= 1, "no batched check was made");
    assert!(
        mem.batched_ranges.get() >= 4,
        "the batch checked {} ranges, not two fields of each code object",
        mem.batched_ranges.get()
    );

    // Unchanged code objects stay cached across epochs: after another
    // epoch the reader still names both frames without re-reading them.
    std::thread::sleep(Duration::from_millis(120));
    let threads = reader.read_all().unwrap();
    let names: Vec<&str> = threads[0].frames.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["second", "outer"]);
}

/// A code object freed and its address reused by one with the same name and
/// file pointers (`exec` of `"<string>"`s) passes the identity check, and
/// its cached call sites are the old code's. A caller of the new code on a
/// call the old one did not have is then refused once, its bytecode read
/// again, the stale entry forgotten: the next read takes the stack.
#[test]
fn stale_call_sites_of_a_reused_code_address_are_read_again() {
    use pyrometer_cpython::layout::FrameModel;
    let (mem, interp, codes, frames) = build_with_frames();
    let FrameModel::Interpreter {
        instr_ptr,
        calls: Some(calls),
        ..
    } = interp.layout.frame
    else {
        panic!("3.13 checks callers");
    };
    let adaptive = interp
        .layout
        .code_code_adaptive
        .expect("3.13 inline bytecode");
    let mut reader = StackReader::new(&mem, interp);
    let read = |reader: &mut StackReader<&Mutable>| {
        reader
            .read_all_filtered(|_| true)
            .expect("the image reads")
            .remove(0)
    };
    let first = read(&mut reader);
    assert!(!first.torn);
    assert_eq!(first.frames[1].line, Some(1), "outer at unit 3");

    // "outer" (codes[2]) is now other code: its CALL at unit 4, not 3, and
    // its frame stopped there.
    {
        let mut image = mem.image.borrow_mut();
        let start = codes[2] + adaptive;
        image.write(start + 2 * 3, &[0, 0]);
        image.write(start + 2 * 4, &[calls.call, 0]);
        image.write(frames[1] + instr_ptr, &(start + 2 * 4).to_le_bytes());
    }
    let refused = read(&mut reader);
    assert!(refused.torn, "the stale call sites were used");
    let again = read(&mut reader);
    assert!(!again.torn, "the code object was not read again");
    let names: Vec<&str> = again.frames.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["first", "outer"]);
    assert_eq!(again.frames[1].line, Some(2), "outer at unit 4");
}
