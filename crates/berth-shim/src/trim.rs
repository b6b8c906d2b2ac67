//! Gives back memory a long-lived process no longer needs: free heap, and the read-only pages
//! of the berth binary that starting up touched (they stay in the page cache; the few it uses
//! later fault back in on demand). The shim calls it once its container runs, the daemon once
//! it has booted.

use std::ops::Range;

/// Drops this process's mappings of never-written pages of the executable and returns free
/// heap to the kernel. Safe to call at any time; failures only mean less memory is given back.
pub fn trim() {
    // SAFETY: malloc_trim only releases free heap pages, under each arena's lock: it is safe
    // at any time, from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    // A binary replaced since the start reads "<path> (deleted)"; its maps lines name the
    // path alone (their first field after the inode).
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let relro = relro_range();
    for m in maps.lines().filter_map(parse_line) {
        if m.path != exe || !droppable(&m, relro.as_ref()) {
            continue;
        }
        // SAFETY: the range is a private, read-only, file-backed mapping of the executable
        // whose pages hold exactly the file's bytes (never written, not the relocated RELRO
        // segment), so dropping them loses nothing: any later access faults the same bytes
        // back in from the page cache.
        unsafe {
            libc::madvise(
                m.addr.start as *mut libc::c_void,
                m.addr.end - m.addr.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

struct Mapping<'a> {
    addr: Range<usize>,
    perms: &'a str,
    path: &'a str,
}

fn parse_line(line: &str) -> Option<Mapping<'_>> {
    let mut it = line.split_whitespace();
    let (start, end) = it.next()?.split_once('-')?;
    let perms = it.next()?;
    let _offset = it.next()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().unwrap_or("");
    Some(Mapping {
        addr: usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?,
        perms,
        path,
    })
}

/// Read-only private mappings that do not overlap the RELRO segment (which the loader wrote
/// relocations into before making it read-only).
fn droppable(m: &Mapping<'_>, relro: Option<&Range<usize>>) -> bool {
    let p = m.perms.as_bytes();
    if p.len() < 4 || p[0] != b'r' || p[1] != b'-' || p[3] != b'p' {
        return false;
    }
    match relro {
        Some(r) => m.addr.end <= r.start || m.addr.start >= r.end,
        // Without program headers to tell, only the text is known to be unmodified.
        None => p[2] == b'x',
    }
}

/// The pages of this executable's PT_GNU_RELRO segment in memory, from the program headers
/// the kernel passed in the auxiliary vector.
fn relro_range() -> Option<Range<usize>> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let (phdr, phnum) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR) as usize,
            libc::getauxval(libc::AT_PHNUM) as usize,
        )
    };
    if phdr == 0 || phnum == 0 {
        return None;
    }
    // SAFETY: AT_PHDR points at AT_PHNUM program headers mapped for the life of the process.
    let headers = unsafe { std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum) };
    // The load bias: where the headers are minus where the file says they are.
    let bias = phdr.checked_sub(
        headers
            .iter()
            .find(|h| h.p_type == libc::PT_PHDR)
            .map(|h| h.p_vaddr as usize)?,
    )?;
    headers
        .iter()
        .find(|h| h.p_type == libc::PT_GNU_RELRO)
        .map(|h| {
            let start = bias + h.p_vaddr as usize;
            (start & !0xfff)..(start + h.p_memsz as usize + 0xfff) & !0xfff
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unwritten_read_only_file_pages_are_dropped() {
        let m = |perms, start| Mapping {
            addr: start..start + 0x2000,
            perms,
            path: "/x",
        };
        let relro = 0x10000..0x12000;
        assert!(droppable(&m("r-xp", 0x4000), Some(&relro)));
        assert!(droppable(&m("r--p", 0), Some(&relro)));
        assert!(droppable(&m("r--p", 0xe000), Some(&relro)));
        assert!(!droppable(&m("r--p", 0x10000), Some(&relro)));
        assert!(!droppable(&m("r--p", 0xf000), Some(&relro)));
        assert!(!droppable(&m("rw-p", 0x20000), Some(&relro)));
        assert!(!droppable(&m("r--s", 0), Some(&relro)));
        assert!(!droppable(&m("r--p", 0), None));
        assert!(droppable(&m("r-xp", 0), None));
        // This test binary has a RELRO segment.
        assert!(relro_range().is_some());
        let text_rss = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
            let mut in_text = false;
            let mut kb = 0u64;
            for l in smaps.lines() {
                if let Some(m) = parse_line(l).filter(|m| m.addr.start < m.addr.end) {
                    in_text = m.perms == "r-xp" && !m.path.starts_with('[');
                } else if let Some(v) = l.strip_prefix("Rss:").filter(|_| in_text) {
                    kb += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0);
                }
            }
            kb
        };
        let before = text_rss();
        trim();
        // The process goes on (this code faulted back in) with less of its text resident.
        assert!(text_rss() < before, "{} -> {}", before, text_rss());
    }
}
