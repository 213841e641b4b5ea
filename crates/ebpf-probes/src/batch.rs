//! Waiting for records to gather in the ring buffer.
//!
//! The reader drains the ring, then waits before it drains again, so that
//! each wake-up handles many records: on a host the services keep busy,
//! a wake-up costs ~100 µs whatever it brings (BENCHMARKS.md, "Batching
//! the pipeline's wake-ups"). A plain sleep cannot see the ring fill up
//! during the wait. Polling the ring's descriptor ends the wait at the
//! first record, since the kernel wakes the reader for the record at the
//! reader's position (`bpf_ringbuf_commit`).
//!
//! [`BatchWait`] waits on the ring with an edge-triggered epoll, and reads
//! how much is queued from the ring's positions, mapped read-only. The
//! caller (`Probes::wait_batch`) switches the probes' `reader_lazy` on
//! first: records are then committed without waking anyone, and the only
//! wake-ups are forced ones, which end the wait:
//! - the queued bytes crossing the probes' threshold (`zt_wakeup_bytes`);
//! - an exec (the new process's /proc entry is read while it lives);
//! - the waker (the tracer's stop and filter requests);
//! - or the end of the timeout.
//!
//! A poll that finds the ring empty switches `reader_lazy` off again before
//! it sleeps, so that the first record wakes it. The threshold is read from
//! the ring's positions, never inferred.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why [`BatchWait::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchEnd {
    /// The timeout passed.
    Timeout,
    /// The records queued reached half the wake-up threshold.
    Full,
    /// The probes forced a wake-up (an exec).
    Forced,
    /// The waker became readable.
    Waker,
}

const RING: u64 = 0;
const WAKER: u64 = 1;

pub(crate) struct BatchWait {
    epoll: OwnedFd,
    /// The ring's first two pages: the consumer position, then the
    /// producer position (the kernel's ring buffer layout), read-only.
    pages: *mut libc::c_void,
    page: usize,
    /// Queued bytes that end a wait: half the probes' wake-up threshold,
    /// so that the forced wake-up always ends it.
    full: u64,
    waker: Option<RawFd>,
}

// SAFETY: the mapping is read-only and only read with atomic loads; the
// struct owns it (unmapped on drop) and the epoll descriptor.
unsafe impl Send for BatchWait {}

impl BatchWait {
    pub(crate) fn new(ring: BorrowedFd<'_>, wakeup_bytes: u64) -> io::Result<BatchWait> {
        // SAFETY: plain system calls; every result is checked.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page).map_err(|_| io::Error::last_os_error())?;
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epfd was just created and is owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: RING,
        };
        // SAFETY: both descriptors are open; ev is a valid epoll_event.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, ring.as_raw_fd(), &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new shared read-only mapping of the ring's descriptor;
        // the kernel allows any read-only mapping of a ring buffer.
        let pages = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_raw_fd(),
                0,
            )
        };
        if pages == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BatchWait {
            epoll,
            pages,
            page,
            full: (wakeup_bytes / 2).max(1),
            waker: None,
        })
    }

    /// Bytes in the ring that the reader has not consumed (records being
    /// written included).
    pub(crate) fn queued(&self) -> u64 {
        // SAFETY: both positions are 8-byte aligned u64s at the start of
        // the first two pages of the live mapping, written by the kernel
        // (producer) and the reader (consumer) with atomic stores.
        let (cons, prod) = unsafe {
            (
                (*(self.pages as *const AtomicU64)).load(Ordering::Acquire),
                (*(self.pages.cast::<u8>().add(self.page) as *const AtomicU64))
                    .load(Ordering::Acquire),
            )
        };
        prod.wrapping_sub(cons)
    }

    /// Wait until `timeout` has passed, the ring holds half the wake-up
    /// threshold, the probes force a wake-up, or `waker` is readable. The
    /// probes' `reader_lazy` must be on (see the module's doc).
    pub(crate) fn wait(
        &mut self,
        timeout: Duration,
        waker: Option<BorrowedFd<'_>>,
    ) -> io::Result<BatchEnd> {
        self.watch_waker(waker)?;
        let end = Instant::now() + timeout;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // Take the wake-ups that came before this wait (while the reader
        // drained, or before it turned `reader_lazy` on).
        // SAFETY: events is a valid array of 2 epoll_events.
        let r = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 2, 0) };
        if r > 0 && events[..r as usize].iter().any(|e| e.u64 == WAKER) {
            return Ok(BatchEnd::Waker);
        }
        loop {
            if self.queued() >= self.full {
                return Ok(BatchEnd::Full);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(BatchEnd::Timeout);
            }
            // Round up: 0.3 ms left must not become a busy loop.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: events is a valid array of 2 epoll_events.
            let r = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 2, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let woke = &events[..r as usize];
            if woke.iter().any(|e| e.u64 == WAKER) {
                return Ok(BatchEnd::Waker);
            }
            if woke.iter().any(|e| e.u64 == RING) {
                return Ok(if self.queued() >= self.full {
                    BatchEnd::Full
                } else {
                    BatchEnd::Forced
                });
            }
            // Else the timeout, checked at the top.
        }
    }

    /// Watch `waker` (level-triggered) instead of the one watched so far.
    fn watch_waker(&mut self, waker: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let fd = waker.map(|w| w.as_raw_fd());
        if fd == self.waker {
            return Ok(());
        }
        let ep = self.epoll.as_raw_fd();
        if let Some(old) = self.waker.take() {
            // SAFETY: removing a descriptor from our epoll set; the event
            // argument is ignored.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, old, std::ptr::null_mut()) };
        }
        if let Some(fd) = fd {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: WAKER,
            };
            // SAFETY: fd is open (borrowed for this call); ev is valid.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
            self.waker = Some(fd);
        }
        Ok(())
    }
}

impl Drop for BatchWait {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.pages, 2 * self.page) };
    }
}
