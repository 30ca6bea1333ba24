//! What the image builder and PID 1 agree on about the kernel.

/// The kernel command line when the config names none: serial console, a quiet kernel,
/// and reboot on panic (which ends a `-no-reboot` QEMU run) instead of hanging.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Kernel command line word that turns on PID 1's debug logging.
pub const DEBUG_FLAG: &str = "hoist.debug";

/// Loaded on every boot when the kernel has them as modules: overlayfs for writable service
/// roots, and the ACPI button + evdev so the power button reaches PID 1. The builder puts
/// them into every initramfs.
pub const ALWAYS_MODULES: &[&str] = &["overlay", "button", "evdev"];

/// Loaded at boot when a service is on the bridge (`network = "bridge"`): the bridge, veth
/// pairs, and nftables with NAT (masquerade, DNAT for `publish`, the `fib` match). The
/// builder puts them (and what they depend on) into the image and the boot file.
pub const BRIDGE_MODULES: &[&str] =
    &["bridge", "veth", "nf_tables", "nf_nat", "nft_chain_nat", "nft_nat", "nft_masq", "nft_fib_ipv4"];
