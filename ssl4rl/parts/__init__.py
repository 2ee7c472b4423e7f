"""Shared mechanics every method builds from: heads, momentum/EMA, queues and memory banks,
distributed gathering, patches and masks. Each exists once."""
