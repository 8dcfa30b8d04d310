"""loggate.v1 stubs: loggate_pb2 and loggate_pb2_grpc, made by generate.sh."""
