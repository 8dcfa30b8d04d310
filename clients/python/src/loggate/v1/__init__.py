"""loggate.v1's generated stubs: ``loggate_pb2`` (messages) and
``loggate_pb2_grpc`` (``LogGatewayStub``), made by generate.sh from
proto/loggate/v1/loggate.proto and committed."""
