//! hoist-images: turns a validated host config into a bootable kernel + initramfs, and
//! imports (or creates) the OCI images its services run.
//!
//! [`build::build`] collects everything into an in-memory [`tree::Tree`]: `hoist-init` as
//! `/init`, the supervisor, hoist's containerd shim, containerd and the OCI runtime (crun
//! or runc) with the shared libraries their ELF headers ask for ([`elf`]), every service's
//! seccomp profile compiled once with the image's own libseccomp ([`seccomp`]), the kernel modules the config and the VM's
//! devices need with their dependencies ([`hoist_guest::modules`]), the config (and PID 1's
//! part of it in a line format, [`boot`]), and every
//! service image unpacked into a ready rootfs tree ([`oci`]: digests verified on the way
//! in; the image's `User` and `WorkingDir` resolved to numbers and absolute paths with
//! [`resolve`]). It writes that tree as a sorted newc archive ([`cpio`]) with fixed owners and
//! mtimes and compresses it ([`compress`]), so the same inputs give the same bytes. The
//! control API's certificates come from [`pki`]: the CA, a server certificate per host
//! name and the revocation list go into the image; `hoist pki` issues and revokes client
//! certificates with roles.
//!
//! It does no network: images come from local OCI layouts, `docker save` tarballs, plain
//! directories, or the build host's registry cache that hoist-registry filled (read by
//! the pinned digest, [`oci::import_pinned`]); [`oci::create_oci_layout`] makes an image
//! from local files.

pub mod boot;
pub mod build;
pub mod compress;
pub mod cpio;
pub mod elf;
pub mod kernel;
pub mod oci;
pub mod pki;
pub mod resolve;
pub mod seccomp;
pub mod tree;
