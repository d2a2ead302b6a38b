{
  "targets": [
    {
      "target_name": "slipway",
      "sources": [
        "native/addon.c",
        "native/handle.c",
        "native/tap.c",
        "native/misc.c",
        "native/csum.c",
        "native/splice.c",
        "native/sockio.c",
        "native/express.c",
        "native/udp.c",
        "native/spawn.c",
        "native/busypoll.c",
        "native/memory.cc"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-fvisibility=hidden"],
      "cflags!": ["-fno-exceptions"]
    },
    {
      "target_name": "slipway-agent",
      "type": "executable",
      "sources": ["native/agent.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "slipway-launcher",
      "type": "executable",
      "sources": ["native/launcher.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
