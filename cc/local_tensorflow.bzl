"""Repository rule: the TensorFlow pip package as a Bazel repository.

Exposes the headers and libtensorflow_framework.so.2 of the TensorFlow that
`python3` (or $PYTHON_BIN_PATH) imports, and its version as
`@local_tensorflow//:version.bzl%TF_VERSION`, so that //:BUILD compiles the
op against exactly the TensorFlow it will be loaded into. WORKSPACE:

    workspace(name = "metrix_tf")

    load("//:cc/local_tensorflow.bzl", "local_tensorflow", "native_rules_stub")

    # Only without network (see native_rules_stub below):
    native_rules_stub(name = "rules_cc", language = "cc")
    native_rules_stub(name = "rules_java", language = "java")

    local_tensorflow(name = "local_tensorflow")
"""

def _local_tensorflow_impl(ctx):
    python = ctx.os.environ.get("PYTHON_BIN_PATH") or ctx.which("python3")
    if not python:
        fail("local_tensorflow: set PYTHON_BIN_PATH to a python with tensorflow")
    result = ctx.execute([
        python,
        "-c",
        "import tensorflow as tf; print(tf.sysconfig.get_include()); " +
        "print(tf.sysconfig.get_lib()); print(tf.__version__)",
    ], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.return_code != 0:
        fail("local_tensorflow: cannot import tensorflow with %s:\n%s" % (python, result.stderr))
    include, lib, version = result.stdout.strip().split("\n")[-3:]
    ctx.symlink(include, "include")
    ctx.symlink(lib + "/libtensorflow_framework.so.2", "libtensorflow_framework.so.2")
    ctx.file("version.bzl", "TF_VERSION = %r\n" % version)
    ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "headers",
    hdrs = glob(["include/**/*.h", "include/**/*.inc", "include/Eigen/**",
                 "include/unsupported/Eigen/**", "include/**/*.hpp"]),
    includes = ["include"],
)

cc_library(
    name = "framework",
    srcs = ["libtensorflow_framework.so.2"],
)

exports_files(["version.bzl"])
""")

local_tensorflow = repository_rule(
    implementation = _local_tensorflow_impl,
    local = True,
    environ = ["PYTHON_BIN_PATH"],
)

_NATIVE_RULES = {
    "cc": ["cc_binary", "cc_import", "cc_library", "cc_test", "cc_toolchain", "cc_toolchain_suite"],
    "java": ["java_binary", "java_import", "java_library", "java_runtime", "java_toolchain"],
}

def _native_rules_stub_impl(ctx):
    language = ctx.attr.language
    ctx.file("WORKSPACE", "")
    ctx.file("BUILD", "")
    ctx.file(language + "/BUILD", "")
    ctx.file(language + "/defs.bzl", "".join([
        "def %s(**kwargs):\n    native.%s(**kwargs)\n\n" % (rule, rule)
        for rule in _NATIVE_RULES[language]
    ]))

# Offline stand-in for rules_cc / rules_java: Debian's bazel-bootstrap (4.2.3)
# fetches both from GitHub to set up its C++ and Java toolchains, which fails
# without network. Declaring these stubs in WORKSPACE (before anything else)
# forwards their defs.bzl to Bazel's native rules instead:
#
#     native_rules_stub(name = "rules_cc", language = "cc")
#     native_rules_stub(name = "rules_java", language = "java")
native_rules_stub = repository_rule(
    implementation = _native_rules_stub_impl,
    attrs = {"language": attr.string(values = ["cc", "java"], mandatory = True)},
)
