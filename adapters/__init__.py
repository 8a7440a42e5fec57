"""Domain adapters (imported as ``rewardfilter.adapters``).

Each subpackage plugs the core's filters into one training stack and is
imported explicitly, so that ``import rewardfilter.adapters`` stays light:
``rewardfilter.adapters.sb3`` (Stable-Baselines3 PPO / A2C on Gymnasium tasks)
and ``rewardfilter.adapters.code`` (PF-PPO for code generation).
"""
