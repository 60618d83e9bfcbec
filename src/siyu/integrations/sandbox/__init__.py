"""The sandbox carrier: an in-process stand-in for WeCom's capabilities (channel codes) for the demo and tests.

The simulated brand it serves (world, loader, activity) lives in `siyu.demo`.
"""
