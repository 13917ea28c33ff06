"""Inference (docs/design/method.md Sec. 7): any video + any audio -> a lip-synced video, and the test-set driver.

    timeline.py    which video frame each output frame shows (ping-pong), reference frames, output length
    frames.py      ChunkReader: 25 fps frames of any video in chunks, forward or backward, bounded memory
    paste.py       the face crop back into the full-resolution frame through the crop transform (feathered)
    lipsync.py     the engine: landmarks -> crops -> references -> generate -> paste -> encode + audio
    references.py  trivial baselines made with the same composite and paste: reference mouth, mean face
    testset.py     the reconstruction setting over a dataset's test clips (Snakemake rule `infer`)
    commands.py    the `g4g lipsync`, `g4g infer`, `g4g reference-videos` subcommands
"""
