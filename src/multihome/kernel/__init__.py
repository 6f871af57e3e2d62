"""All I/O with the kernel: the netlink layers, reading the host's state, the one writer of
routes, rules and sysctls, and the writers of nftables and conntrack."""
