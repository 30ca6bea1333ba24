//! Limits and errors of blob uploads: a blob must fit the cap and the space left where
//! containerd keeps content (RAM, on a host without a disk), with room to spare for
//! unpacking it.

use tonic::Status;

/// Largest blob accepted.
pub const MAX_BLOB: u64 = 4 << 30;
/// Uploads at once.
pub const MAX_UPLOADS: usize = 4;
/// An upload that sends nothing for this long is dropped.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Room held for an upload under way: what concurrent uploads announced counts against the
/// free space too. Given back when dropped.
pub struct Reservation {
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    size: u64,
}

impl Reservation {
    pub fn take(total: &std::sync::Arc<std::sync::atomic::AtomicU64>, size: u64) -> Result<Self, Status> {
        use std::sync::atomic::Ordering;
        let before = total.fetch_add(size, Ordering::SeqCst);
        let me = Reservation { total: total.clone(), size };
        check_room(before.saturating_add(size))?;
        if size > MAX_BLOB {
            return Err(Status::resource_exhausted(format!("blob of {size} bytes: over the {MAX_BLOB} byte cap")));
        }
        Ok(me)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.total.fetch_sub(self.size, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Refuses a blob over the cap or over what the filesystem can still take (the blob, and
/// as much again for its unpacked layer, plus a reserve).
fn check_room(size: u64) -> Result<(), Status> {
    if size > MAX_BLOB {
        return Err(Status::resource_exhausted(format!("blob of {size} bytes: over the {MAX_BLOB} byte cap")));
    }
    let free = crate::images::containerd_free_bytes().unwrap_or(u64::MAX);
    room(size, free)
}

fn room(size: u64, free: u64) -> Result<(), Status> {
    let need = size.saturating_mul(2).saturating_add(crate::images::MIN_FREE);
    if need > free {
        return Err(Status::resource_exhausted(format!(
            "blob of {size} bytes: {free} bytes free where containerd keeps images, {need} needed"
        )));
    }
    Ok(())
}

/// An upload containerd would not keep, as the client should see it.
pub fn refused(digest: &str, error: String) -> Status {
    let lower = error.to_ascii_lowercase();
    if lower.contains("unexpected commit digest")
        || lower.contains("unexpected commit size")
        || lower.contains("more than the")
        || lower.contains("bytes sent")
    {
        Status::invalid_argument(format!("blob {digest} refused: its bytes do not match its digest and size ({error})"))
    } else {
        Status::internal(format!("blob {digest}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_needs_room_for_itself_its_layer_and_a_reserve() {
        assert!(room(10 << 20, 100 << 20).is_ok());
        let e = room(40 << 20, 100 << 20).expect_err("80 MiB + 64 MiB > 100 MiB");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(check_room(MAX_BLOB + 1).expect_err("cap").code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn reservations_add_up_and_are_given_back() {
        let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let a = Reservation::take(&total, 1000).expect("room for a small blob");
        let b = Reservation::take(&total, 2000).expect("and another");
        assert_eq!(total.load(std::sync::atomic::Ordering::SeqCst), 3000);
        drop(a);
        drop(b);
        assert_eq!(total.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(Reservation::take(&total, MAX_BLOB + 1).is_err());
        assert_eq!(total.load(std::sync::atomic::Ordering::SeqCst), 0, "a refused reservation is given back");
    }

    #[test]
    fn a_digest_mismatch_is_the_client_s_fault() {
        let e = refused(
            "sha256:ab",
            "content write sha256:ab: unexpected commit digest sha256:cd, expected sha256:ab".into(),
        );
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused("sha256:ab", "disk on fire".into()).code(), tonic::Code::Internal);
    }
}
