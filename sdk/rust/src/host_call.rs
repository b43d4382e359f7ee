//! One exchange through a `nimbus_*` host import (`nimbus_http`,
//! `nimbus_kv`): `send` hands the host the request and answers the length
//! of its outcome, `read` copies the outcome out.

/// An import's `send` (or `call`): the request's pointer and length, the
/// outcome's length.
pub(crate) type Send = unsafe extern "C" fn(*const u8, i32) -> i32;
/// An import's `read`: copies up to `len` bytes of the outcome to `ptr`.
pub(crate) type Read = unsafe extern "C" fn(*mut u8, i32) -> i32;

/// Send `request` and read the outcome; `None` if the request is too large
/// to describe.
#[allow(unsafe_code)]
pub(crate) fn exchange(send: Send, read: Read, request: &[u8]) -> Option<Vec<u8>> {
    let len = i32::try_from(request.len()).ok()?;
    // SAFETY: the pointer and length describe `request`, alive across the
    // call; the host only reads them.
    let answer = unsafe { send(request.as_ptr(), len) }.max(0);
    let mut outcome = vec![0u8; answer as usize];
    // SAFETY: `outcome` is writable for its whole length.
    let copied = unsafe { read(outcome.as_mut_ptr(), answer) }.max(0);
    outcome.truncate(copied as usize);
    Some(outcome)
}
