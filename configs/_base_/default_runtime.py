# What every xcit_dense run adds to mmdet's or mmseg's default runtime (which configs inherit
# first): the hooks that make long runs resumable and stop them cleanly. RNGStateHook saves
# the random states in every checkpoint and restores them on --resume, so a resumed run draws
# the same samples and augmentations as an uninterrupted one; NonFiniteLossHook stops at the
# first NaN/inf loss, naming the images and the last good checkpoint. (Checkpoints are written
# atomically by xcit_dense's local file backend, so a killed run never leaves a truncated one.)
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook')]
