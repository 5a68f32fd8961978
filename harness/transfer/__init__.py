"""The transferability experiment of Yosinski et al. (2014): treatments, their plan and the base cache.

- :mod:`~harness.transfer.treatments`: BnB, BnB+, AnB, AnB+, random, warm, scratch as data;
- :mod:`~harness.transfer.plan`: a treatment job -> the bases it needs and the ordinary run it is;
- :mod:`~harness.transfer.bases`: each base trained once and shared, under a lock.
"""
