//! Keep the resident memory of a big checkout bounded.
//!
//! gix reads packs through read-only file mappings; every page a checkout
//! touches stays resident until the process exits, so writing out a 50 MB
//! repository would hold the whole pack in memory. Pack files never change
//! once written, so their pages can be handed back to the page cache as we
//! go (`MADV_DONTNEED` on a private read-only file mapping: a later access
//! reads the same bytes from the file again).

use fs_err as fs;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Hand pages back after this many bytes of objects have been read.
const EVERY: usize = 8 << 20;

static SINCE_LAST: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
}
const MADV_DONTNEED: i32 = 4;

/// Count `bytes` read from the repository; now and then release pack pages.
pub fn note_read(bytes: usize) {
    if SINCE_LAST.fetch_add(bytes, Ordering::Relaxed) + bytes >= EVERY {
        SINCE_LAST.store(0, Ordering::Relaxed);
        release_pack_pages();
    }
}

/// The address ranges of read-only mappings of `*.pack` / `*.idx` files.
fn pack_mappings(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if !perms.starts_with("r-") || !(path.ends_with(".pack") || path.ends_with(".idx")) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
        })
        .collect()
}

/// Drop the resident pages of every pack mapping of this process.
pub fn release_pack_pages() {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else { return };
    for (start, end) in pack_mappings(&maps) {
        // SAFETY: the range is a whole read-only, private mapping of an
        // immutable file; MADV_DONTNEED only makes its next access fault the
        // same bytes in from the file again. A failure changes nothing.
        unsafe {
            madvise(start as *mut std::ffi::c_void, end - start, MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_pack_and_index_mappings_are_released() {
        let maps = "\
7f0000000000-7f0000100000 r--s 00000000 fe:01 123 /r/objects/pack/pack-1.pack
7f0000200000-7f0000201000 r--p 00000000 fe:01 124 /r/objects/pack/pack-1.idx
7f0000300000-7f0000400000 rw-p 00000000 00:00 0 
7f0000500000-7f0000600000 rw-s 00000000 fe:01 125 /r/objects/pack/pack-2.pack
7f0000700000-7f0000800000 r-xp 00000000 fe:01 126 /usr/bin/piku-receive
";
        assert_eq!(pack_mappings(maps), vec![(0x7f00_0000_0000, 0x7f00_0010_0000), (0x7f00_0020_0000, 0x7f00_0020_1000)]);
    }

    #[test]
    fn a_released_mapping_reads_back_the_same_bytes() {
        // A real file mapping, released and read again, as gix's packs are.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pack");
        let bytes: Vec<u8> = (0..(64 * 4096)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let map = MappedFile::open(&path, bytes.len());
        assert_eq!(map.bytes(), &bytes[..]);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(pack_mappings(&maps).iter().any(|&(s, _)| s == map.addr as usize), "{maps}");
        release_pack_pages();
        assert_eq!(map.bytes(), &bytes[..]);
    }

    struct MappedFile {
        addr: *mut std::ffi::c_void,
        len: usize,
    }

    unsafe extern "C" {
        fn mmap(addr: *mut std::ffi::c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut std::ffi::c_void;
        fn munmap(addr: *mut std::ffi::c_void, len: usize) -> i32;
    }

    impl MappedFile {
        fn open(path: &std::path::Path, len: usize) -> MappedFile {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(path).unwrap();
            // PROT_READ = 1, MAP_PRIVATE = 2
            let addr = unsafe { mmap(std::ptr::null_mut(), len, 1, 2, file.as_raw_fd(), 0) };
            assert_ne!(addr as isize, -1);
            MappedFile { addr, len }
        }
        fn bytes(&self) -> &[u8] {
            unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
        }
    }

    impl Drop for MappedFile {
        fn drop(&mut self) {
            unsafe { munmap(self.addr, self.len) };
        }
    }
}
