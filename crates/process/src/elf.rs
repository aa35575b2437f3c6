//! ELF binaries mapped into the target: symbols, sections and load bias.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::error::ProcessError;
use crate::maps::MapEntry;

/// A section, at its address in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Address in the target (load bias applied).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// What pyrometer needs from one mapped binary (the executable or a shared
/// library): its symbols and sections, relocated into the target.
#[derive(Debug, Clone)]
pub struct Binary {
    /// Path as the target sees it.
    pub path: PathBuf,
    /// Load bias: add to file virtual addresses to get target addresses.
    pub bias: u64,
    symbols: HashMap<String, u64>,
    sections: HashMap<String, Section>,
    rodata: Option<(u64, Vec<u8>)>,
}

impl Binary {
    /// Parse `file` (openable from here) and relocate it with the target's
    /// mappings of `target_path`.
    pub fn load(file: &Path, target_path: &Path, maps: &[MapEntry]) -> Result<Self, ProcessError> {
        let elf_err = |why: String| ProcessError::Elf {
            path: file.to_path_buf(),
            why,
        };
        let handle = std::fs::File::open(file).map_err(|e| ProcessError::Io {
            path: file.to_path_buf(),
            source: e,
        })?;
        // SAFETY: the file is mapped read-only; a concurrent truncation could
        // fault, which is the accepted risk of every ELF reader using mmap.
        let data = unsafe { memmap2::Mmap::map(&handle) }.map_err(|e| ProcessError::Io {
            path: file.to_path_buf(),
            source: e,
        })?;
        let obj = object::File::parse(&*data).map_err(|e| elf_err(e.to_string()))?;

        let first_load_vaddr = obj
            .segments()
            .map(|s| s.address())
            .min()
            .ok_or_else(|| elf_err("no loadable segment".into()))?;
        let lowest_map = maps
            .iter()
            .filter(|m| m.path.as_deref() == Some(target_path))
            .map(|m| m.start - m.offset.min(m.start))
            .min()
            .ok_or_else(|| elf_err("not mapped in the target".into()))?;
        let bias = lowest_map.wrapping_sub(first_load_vaddr & !0xfff);

        let mut symbols = HashMap::new();
        for sym in obj.dynamic_symbols().chain(obj.symbols()) {
            if sym.address() == 0 {
                continue;
            }
            if let Ok(name) = sym.name() {
                symbols
                    .entry(name.to_string())
                    .or_insert(sym.address().wrapping_add(bias));
            }
        }
        let mut sections = HashMap::new();
        let mut rodata = None;
        for sec in obj.sections() {
            if let Ok(name) = sec.name() {
                sections.insert(
                    name.to_string(),
                    Section {
                        addr: sec.address().wrapping_add(bias),
                        size: sec.size(),
                    },
                );
                if name == ".rodata" {
                    if let Ok(bytes) = sec.data() {
                        rodata = Some((sec.address().wrapping_add(bias), bytes.to_vec()));
                    }
                }
            }
        }
        Ok(Binary {
            path: target_path.to_path_buf(),
            bias,
            symbols,
            sections,
            rodata,
        })
    }

    /// Address of a symbol in the target.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// A section by name (`.PyRuntime`, `.data`, `.bss`).
    pub fn section(&self, name: &str) -> Option<Section> {
        self.sections.get(name).copied()
    }

    /// Number of symbols (0 for a fully stripped binary).
    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// Bytes of `.rodata`, for searching version strings.
    pub fn rodata(&self) -> Option<&[u8]> {
        self.rodata.as_ref().map(|(_, b)| b.as_slice())
    }

    /// The file name without directories.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}
