//! Where a code object calls (3.11+): its call instructions, found once when
//! the code object is first read, and the check that a caller's frame is
//! stopped on one (see [`crate::layout::CallOps`] for why).

use crate::layout::{CallOp, CallOps};

/// One call instruction of a code object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Site {
    /// Its first code unit.
    start: u32,
    /// Code units it spans.
    units: u8,
    /// It sets the caller's `return_offset` (3.13+).
    sets_return_offset: bool,
    /// An instrumented opcode hides what it is.
    hidden: bool,
}

/// The call instructions of one code object.
#[derive(Debug, Clone, Default)]
pub struct CallSites {
    /// Sorted by `start`. `None`: the bytecode was not read, and nothing can
    /// be said of a frame running this code.
    sites: Option<Box<[Site]>>,
    /// Length of the bytecode, in code units.
    units: u32,
    /// What a hidden instruction may span.
    max_units: u8,
    /// The code is `_Py_InitCleanup` (3.13+): its frame is a shim, not
    /// Python code anyone wrote.
    init_shim: bool,
}

impl CallSites {
    /// Nothing known: every position may be a call.
    pub fn unknown() -> CallSites {
        CallSites::default()
    }

    /// Find the call instructions of `bytecode` (`co_code_adaptive`: 2-byte
    /// code units, opcode first), instruction by instruction: inline cache
    /// entries are stepped over, so none is taken for a call. After an
    /// instruction hidden by instrumentation (whose length is not known)
    /// every unit is looked at: a cache entry that looks like a call then
    /// only makes the check accept more, never reject a real call.
    pub fn scan(ops: &CallOps, bytecode: &[u8]) -> CallSites {
        let units = u32::try_from(bytecode.len() / 2).unwrap_or(u32::MAX);
        let mut sites = Vec::new();
        let mut in_step = true;
        let mut start = 0u32;
        while let Some(&opcode) = bytecode.get(start as usize * 2) {
            if start >= units {
                break;
            }
            let at = start;
            start = match ops.caches_after(opcode) {
                Some(caches) if in_step => at.saturating_add(1 + u32::from(caches)),
                _ => {
                    in_step = false;
                    at.saturating_add(1)
                }
            };
            let site = match ops.op(opcode) {
                CallOp::NotCall => continue,
                CallOp::Call {
                    units,
                    sets_return_offset,
                } => Site {
                    start: at,
                    units,
                    sets_return_offset,
                    hidden: false,
                },
                CallOp::Hidden => Site {
                    start: at,
                    units: ops.max_units,
                    sets_return_offset: false,
                    hidden: true,
                },
            };
            sites.push(site);
        }
        CallSites {
            sites: Some(sites.into_boxed_slice()),
            units,
            max_units: ops.max_units,
            init_shim: ops.init_check.is_some() && bytecode.first().copied() == ops.init_check,
        }
    }

    /// Bytes held on the heap (for the code cache's weight).
    pub fn heap_bytes(&self) -> usize {
        self.sites
            .as_ref()
            .map_or(0, |s| s.len() * std::mem::size_of::<Site>())
    }

    /// Whether the bytecode was read.
    pub fn known(&self) -> bool {
        self.sites.is_some()
    }

    /// Whether this is `_Py_InitCleanup`, the shim frame between `__init__`
    /// and its caller (3.13+): a frame of it is not shown.
    pub fn is_init_shim(&self) -> bool {
        self.init_shim
    }

    /// [`CallSites::may_be_calling`] for an instruction pointer `offset`
    /// bytes past the first code unit: an odd offset is no instruction.
    pub fn may_be_calling_at(
        &self,
        offset: u64,
        at_last_unit: bool,
        return_offset: Option<u16>,
    ) -> bool {
        offset.is_multiple_of(2) && self.may_be_calling(offset / 2, at_last_unit, return_offset)
    }

    /// Whether a frame of this code whose instruction pointer is at code
    /// unit `unit` can be stopped in a call it made inline. `at_last_unit`:
    /// the pointer is left on the call's last unit (3.11/3.12 `prev_instr`),
    /// else on its first (3.13+ `instr_ptr`). `return_offset`: the frame's
    /// (3.13+), when read. With the bytecode not read nothing can be said,
    /// and the answer is yes; outside the bytecode it is no.
    pub fn may_be_calling(
        &self,
        unit: u64,
        at_last_unit: bool,
        return_offset: Option<u16>,
    ) -> bool {
        let Some(sites) = self.sites.as_deref() else {
            return true;
        };
        let Ok(unit) = u32::try_from(unit) else {
            return false;
        };
        if unit >= self.units {
            return false;
        }
        // Sites starting at or before `unit`.
        let end = sites.partition_point(|s| s.start <= unit);
        if at_last_unit {
            // A site ends at `unit` only if it starts within `max_units` of it.
            let reach = u32::from(self.max_units);
            sites[..end]
                .iter()
                .rev()
                .take_while(|s| s.start.saturating_add(reach) > unit)
                .any(|s| {
                    let end = s.start.saturating_add(u32::from(s.units));
                    if s.hidden {
                        unit < end
                    } else {
                        end - 1 == unit
                    }
                })
        } else {
            match end.checked_sub(1).and_then(|i| sites.get(i)) {
                Some(s) if s.start == unit => {
                    s.hidden || !s.sets_return_offset || return_offset != Some(0)
                }
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{CALLS_312, CALLS_313, CALLS_314};

    /// Bytecode of these opcodes, each with oparg 0.
    fn code(units: &[u8]) -> Vec<u8> {
        units.iter().flat_map(|&op| [op, 0]).collect()
    }

    #[test]
    fn a_caller_after_a_call_is_on_its_last_cache_unit_on_3_12() {
        // LOAD_FAST, CALL + 3 caches, RETURN_VALUE.
        let sites = CallSites::scan(&CALLS_312, &code(&[124, 171, 0, 0, 0, 83]));
        assert!(sites.may_be_calling(4, true, None));
        // On the opcode itself the call is a C call: no Python callee.
        assert!(!sites.may_be_calling(1, true, None));
        assert!(!sites.may_be_calling(0, true, None));
        assert!(!sites.may_be_calling(5, true, None));
        assert!(!sites.may_be_calling(2, true, None));
    }

    #[test]
    fn a_caller_is_on_the_call_opcode_with_a_return_offset_on_3_13() {
        // LOAD_FAST (85), CALL (53) + 3 caches, RETURN_VALUE (36).
        let sites = CallSites::scan(&CALLS_313, &code(&[85, 53, 0, 0, 0, 36]));
        assert!(sites.may_be_calling(1, false, Some(4)));
        assert!(sites.may_be_calling(1, false, None));
        // A frame that has made no inline call yet shows 0.
        assert!(!sites.may_be_calling(1, false, Some(0)));
        for unit in [0, 2, 4, 5] {
            assert!(!sites.may_be_calling(unit, false, Some(4)), "unit {unit}");
        }
    }

    #[test]
    fn cache_entries_are_never_taken_for_calls() {
        // CALL whose three cache entries look like CALLs, then LOAD_FAST.
        let sites = CallSites::scan(&CALLS_312, &code(&[171, 171, 171, 171, 124]));
        assert!(sites.may_be_calling(3, true, None));
        assert!(!sites.may_be_calling(4, true, None));
        assert!(!sites.may_be_calling(5, true, None));
        let sites = CallSites::scan(&CALLS_313, &code(&[53, 53, 53, 53, 85]));
        assert!(sites.may_be_calling(0, false, Some(4)));
        for unit in 1..5 {
            assert!(!sites.may_be_calling(unit, false, Some(4)), "unit {unit}");
        }
        // LOAD_ATTR (9 caches) whose caches look like calls.
        let mut units = vec![82];
        units.extend([53; 9]);
        units.push(85);
        let sites = CallSites::scan(&CALLS_313, &code(&units));
        assert!(!sites.may_be_calling(10, false, Some(4)));
    }

    #[test]
    fn a_hidden_instruction_may_be_any_call() {
        // INSTRUMENTED_LINE (254) over a CALL, its caches, then a non-call.
        let sites = CallSites::scan(&CALLS_313, &code(&[254, 0, 0, 0, 85]));
        assert!(sites.may_be_calling(0, false, Some(0)));
        assert!(!sites.may_be_calling(4, false, Some(4)));
        let sites = CallSites::scan(&CALLS_312, &code(&[254, 0, 0, 0, 124]));
        assert!(sites.may_be_calling(3, true, None));
    }

    #[test]
    fn unread_bytecode_says_nothing_and_positions_outside_it_are_no_call() {
        assert!(CallSites::unknown().may_be_calling(3, false, Some(0)));
        assert!(!CallSites::unknown().known());
        let sites = CallSites::scan(&CALLS_313, &code(&[85, 53, 0, 0, 0]));
        assert!(sites.known());
        for unit in [5, 6, u64::from(u32::MAX) + 1, u64::MAX] {
            assert!(!sites.may_be_calling(unit, false, Some(4)), "unit {unit}");
            assert!(!sites.may_be_calling(unit, true, None), "unit {unit}");
        }
    }

    #[test]
    fn an_odd_length_or_empty_bytecode_scans_safely() {
        // Half a unit is no unit: nothing is a call.
        let sites = CallSites::scan(&CALLS_313, &[53]);
        assert!(!sites.may_be_calling(0, false, Some(4)));
        let sites = CallSites::scan(&CALLS_313, &[]);
        assert!(!sites.may_be_calling(0, false, Some(4)));
    }

    #[test]
    fn byte_offsets_are_units_and_odd_ones_no_instruction() {
        let sites = CallSites::scan(&CALLS_313, &code(&[85, 53, 0, 0, 0, 36]));
        assert!(sites.may_be_calling_at(2, false, Some(4)));
        assert!(!sites.may_be_calling_at(3, false, Some(4)));
        assert!(!sites.may_be_calling_at(0, false, Some(4)));
    }

    #[test]
    fn the_init_shim_is_known_by_its_first_instruction() {
        // _Py_InitCleanup: EXIT_INIT_CHECK, RETURN_VALUE, RESUME.
        let shim = CallSites::scan(&CALLS_313, &code(&[13, 36, 149]));
        assert!(shim.is_init_shim());
        assert!(shim.may_be_calling(0, false, Some(0)));
        assert!(CallSites::scan(&CALLS_314, &code(&[11, 35, 128])).is_init_shim());
        assert!(!CallSites::scan(&CALLS_313, &code(&[149, 13])).is_init_shim());
        assert!(!CallSites::scan(&CALLS_312, &code(&[13, 36])).is_init_shim());
        assert!(!CallSites::unknown().is_init_shim());
    }

    #[test]
    fn a_3_14_subscript_call_spans_its_five_caches() {
        // BINARY_OP (44) + 5 caches, then CALL (52) + 3 caches.
        let sites = CallSites::scan(&CALLS_314, &code(&[44, 0, 0, 0, 0, 0, 52, 0, 0, 0]));
        assert!(sites.may_be_calling(0, false, Some(6)));
        assert!(sites.may_be_calling(6, false, Some(4)));
        assert!(!sites.may_be_calling(3, false, Some(6)));
    }
}
