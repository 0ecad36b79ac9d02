//! Draining a child's output on its own thread, keeping a bounded tail (stderr) or all of it up
//! to a cap (a load's stdout, which names what was loaded).

use std::io::Read;
use std::thread::JoinHandle;

/// Reads `r` to the end on a new thread; the handle yields the last `keep` bytes read.
pub(crate) fn drain<R: Read + Send + 'static>(mut r: R, keep: usize) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > keep * 2 {
                        let cut = tail.len() - keep;
                        tail.drain(..cut);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if tail.len() > keep {
            let cut = tail.len() - keep;
            tail.drain(..cut);
        }
        tail
    })
}

/// Collects a drain thread's bytes as text (lossy), without a trailing newline.
pub(crate) fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = handle.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let got = drain(std::io::Cursor::new(data.clone()), 1000)
            .join()
            .unwrap();
        assert_eq!(got, &data[data.len() - 1000..]);
    }
}
