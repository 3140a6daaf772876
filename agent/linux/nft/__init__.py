"""nftables for the Linux data plane: one table (``ip contiv``) owned by us.

* :mod:`.lib` -- libnftables through ctypes (in-process: no ``nft`` process
  per change), the one place nftables commands are executed;
* :mod:`.values` -- tables, chains, sets and map elements as values;
* :mod:`.descriptors` -- their descriptors, executed as one nftables
  transaction per reconciler batch.
"""
