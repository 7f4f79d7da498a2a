//! Reading input streams: the one read call that every read loop of the
//! crate (score, transform, train, the parallel engine) goes through.

use std::io::{self, Read};

/// Read once from `reader` into `buf`: the bytes read, 0 at the end of the
/// input. A read interrupted by a signal (`EINTR`: a FIFO or a terminal read
/// while `SIGTERM`'s handler runs) is retried, as std's `read_exact` and
/// `read_to_end` do; a bare `Read::read` hands it to the caller.
pub fn read_some<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that is interrupted twice before each read it serves.
    struct Flaky<'a>(&'a [u8], u8);

    impl Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 < 2 {
                self.1 += 1;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.1 = 0;
            self.0.read(buf)
        }
    }

    #[test]
    fn interrupted_reads_are_retried_and_other_errors_are_not() {
        let mut r = Flaky(b"abc", 0);
        let mut buf = [0; 2];
        assert_eq!(read_some(&mut r, &mut buf).unwrap(), 2);
        assert_eq!(&buf, b"ab");
        assert_eq!(read_some(&mut r, &mut buf).unwrap(), 1);
        assert_eq!(read_some(&mut r, &mut buf).unwrap(), 0);
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let e = read_some(&mut Broken, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
