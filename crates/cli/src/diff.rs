//! `pyrometer diff`: a differential flame graph of two saved pprof
//! profiles. The frames are AFTER's; a frame is red when it has more own
//! (self) samples in AFTER than in BEFORE, blue when it has fewer, the
//! deeper the colour the larger the change (inferno's differential flame
//! graph); each frame's tooltip gives the change in points of the total. BEFORE is scaled to AFTER's total number
//! of (shown) samples first, unless `--no-normalize`, so a longer or busier
//! recording does not paint everything red.

use anyhow::{bail, Context, Result};
use pyrometer_outputs::folded_lines;

use crate::args::DiffArgs;
use crate::output::{check_writable, write_atomic};
use crate::report::{derived_output, describe, load, stack_options};

pub fn run(args: DiffArgs) -> Result<()> {
    let before = load(&args.before)?;
    let after = load(&args.after)?;
    let output = match args.output {
        Some(o) => o,
        None => derived_output(&args.after, "diff.svg"),
    };
    check_writable(&output)?;
    // Process root frames on both sides, or on neither: the same flags
    // must label the same code the same way.
    let mut opts = stack_options(&args.stacks, &after);
    opts.processes |= stack_options(&args.stacks, &before).processes;
    let before_lines = folded_lines(&before, &opts);
    let after_lines = folded_lines(&after, &opts);
    if after_lines.is_empty() {
        bail!(
            "{}: no samples to show{}",
            args.after.display(),
            if opts.include_idle {
                ""
            } else {
                " (idle threads are left out without --idle)"
            }
        );
    }
    let mut merged = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: !args.no_normalize,
            strip_hex: false,
        },
        before_lines.join("\n").as_bytes(),
        after_lines.join("\n").as_bytes(),
        &mut merged,
    )
    .context("cannot merge the two profiles")?;
    let merged = String::from_utf8(merged).context("cannot merge the two profiles")?;

    let mut options = inferno::flamegraph::Options::default();
    options.title = pyrometer_outputs::sanitize_text(&format!(
        "pyrometer diff: {} → {}",
        args.before.display(),
        args.after.display()
    ));
    options.subtitle = Some(if args.no_normalize {
        "red: more own samples in AFTER, blue: fewer (raw counts)".to_string()
    } else {
        "red: more own samples in AFTER, blue: fewer (BEFORE scaled to AFTER's total)".to_string()
    });
    options.count_name = "samples".to_string();
    options.direction = inferno::flamegraph::Direction::Inverted;
    write_atomic(&output, |w| {
        inferno::flamegraph::from_lines(&mut options, merged.lines(), w)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })?;
    eprintln!(
        "pyrometer: wrote differential flame graph to {}",
        output.display()
    );
    eprintln!("  before: {}", describe(&before));
    eprintln!("  after:  {}", describe(&after));
    Ok(())
}
