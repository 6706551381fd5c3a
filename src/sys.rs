//! Every call into the C library, each behind a safe function: the host name, the effective
//! uid and its login name, signals to another process, whether a reader still holds a pipe,
//! free space on a file system, and terminal echo. The rest of the crate denies `unsafe_code`;
//! only this file (and the SIMD body scan in `dkim/canon.rs`) may use it.
//!
//! A bottom layer: imports nothing of ours, and anyone may import it.
#![allow(unsafe_code)]

use std::io;
use std::path::Path;

/// The machine's host name as the kernel has it (`gethostname`), bytes that are not UTF-8
/// replaced.
pub fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The login name of a uid, from the system's user database (`getpwuid_r`).
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data (integers and pointers): all zeroes is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into pwd and buf, both owned here and sized as passed; the
    // returned name points into buf, which outlives its use below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside buf (checked non-null above).
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}

/// Whether process `pid` exists and we may signal it (`kill(pid, 0)`).
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: kill only sends a signal (here none); no memory is involved.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Send SIGUSR1 to `pid`.
pub fn send_usr1(pid: i32) -> io::Result<()> {
    // SAFETY: as above.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when `fd` is a pipe (or socket) whose other end has no reader any more: poll reports
/// an error condition for writing.
pub fn reader_gone(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd we own, zero timeout; poll only reads and writes that struct.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

/// Bytes available to an unprivileged user on the file system holding `dir` (`statvfs`).
pub fn available_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain data (integers): all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs reads a NUL-terminated path and fills the struct we own; both pointers
    // are valid for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// The terminal on standard input stops echoing what is typed for as long as this lives
/// (a password prompt). Nothing happens when standard input is not a terminal.
pub struct EchoOff(Option<libc::termios>);

impl EchoOff {
    /// Turn echo off on standard input.
    pub fn stdin() -> EchoOff {
        // SAFETY: termios is plain data: all zeroes is a valid value, filled by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the attributes read in stdin().
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_answer() {
        assert!(hostname().is_ok_and(|h| !h.is_empty()));
        assert!(process_alive(std::process::id() as i32));
        // uid 0 is root on every Unix.
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let dir = tempfile::tempdir().unwrap();
        assert!(available_space(dir.path()).unwrap() > 0);
        assert!(available_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_pipe_without_reader_is_told_apart() {
        use std::os::fd::AsRawFd;
        let (reader, writer) = io::pipe().unwrap();
        assert!(!reader_gone(writer.as_raw_fd()));
        drop(reader);
        assert!(reader_gone(writer.as_raw_fd()));
    }
}
