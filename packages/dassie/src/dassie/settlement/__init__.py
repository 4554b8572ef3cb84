"""Settlement on EVM chains: the web3 adapter per chain (:mod:`.evm`) and the
policy that decides when to close channels and books the result (:mod:`.manager`)."""
