"""Write the KServe v2 / Triton protocol definitions as one FileDescriptorSet.

The tritonclient wheel carries Triton's `model_config.proto` and `grpc_service.proto` as
compiled descriptors (in its *_pb2 modules); this copies them, dependencies first, into a
binary FileDescriptorSet that prost-build reads (ddpm-runtime's build.rs runs this with the
Python of the Triton test environment, `scripts/setup-env.sh --triton`). Nothing of the
protocol is written in this repository.

Usage: python triton_descriptors.py OUT.bin
"""

import sys

from google.protobuf import descriptor_pb2
from tritonclient.grpc import model_config_pb2, service_pb2


def main() -> None:
    fds = descriptor_pb2.FileDescriptorSet()
    for module in (model_config_pb2, service_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        fds.file.append(proto)
    with open(sys.argv[1], "wb") as f:
        f.write(fds.SerializeToString())
    print(" ".join(f"{f.name} ({f.package})" for f in fds.file))


if __name__ == "__main__":
    main()
