"""hoard.v1.Datasets: protobuf in, ``DatasetService`` calls, protobuf out.

Streams run under ``limits``: ReadData takes a "read" slot, Append an "append" slot, Follow a
"follow" slot. The idle watchdog counts only the time a stream waits on its client (to take
a block, or to send the next batch): a follower of a quiet dataset waiting for rows is not a
stalled client. An Append stream is idle when its client neither sends nor has a commit or
an ack pending (its read-ahead thread waits on the client while commits run: that wait does
not count). At the daemon's stop both end with UNAVAILABLE, reason SHUTTING_DOWN (Append
after acknowledging what it received).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import grpc
import numpy as np

from hoard.v1 import datasets_pb2 as pb
from hoard.v1 import datasets_pb2_grpc
from hoard_server.grpc.limits import StreamLimits
from hoard_server.grpc.messages import to_message
from hoard_server.grpc.status import grpc_errors
from hoard_server.services.datasets import arrays, metadata
from hoard_server.services.datasets.selection import Item
from hoard_server.services.datasets.service import (
    AppendPart,
    DataBlock,
    DatasetService,
    NodeDescription,
    NodeRef,
)


def _ref(msg: pb.NodeRef) -> NodeRef:
    return NodeRef(msg.repository, msg.path, msg.where, msg.dataset)


def _optional(msg: object, name: str) -> int | None:
    return getattr(msg, name) if msg.HasField(name) else None  # type: ignore[attr-defined]


def _items(selection: pb.Selection) -> list[Item]:
    items: list[Item] = []
    for it in selection.items:
        kind = it.WhichOneof("item")
        if kind == "index":
            items.append(it.index)
        elif kind == "slice":
            s = it.slice
            items.append(slice(_optional(s, "start"), _optional(s, "stop"), _optional(s, "step")))
        elif kind == "ellipsis":
            items.append(Ellipsis)
        elif kind == "indices":
            items.append(list(it.indices.values))
        else:
            items.append(slice(None))  # an empty item selects the whole axis
    return items


def _value_in(v: pb.Value) -> metadata.Value:
    kind = v.WhichOneof("kind")
    if kind == "datetime_value":
        return metadata.parse_datetime(v.datetime_value)
    if kind == "array_value":
        return arrays.decode(v.array_value)
    if kind is None or kind == "none":
        return None
    return getattr(v, kind)


def _value_out(value: metadata.Value) -> pb.Value:
    if value is None:
        return pb.Value(none=True)
    if isinstance(value, bool):
        return pb.Value(bool_value=value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return pb.Value(int_value=value)
        value = np.array(value, dtype="<u8")  # a uint64 attribute beyond int64: exact as an array
    if isinstance(value, float):
        return pb.Value(float_value=value)
    if isinstance(value, str):
        return pb.Value(string_value=value)
    if isinstance(value, bytes):
        return pb.Value(bytes_value=value)
    if isinstance(value, datetime):
        return pb.Value(datetime_value=metadata.format_datetime(value))
    return pb.Value(array_value=to_message(pb.Array, arrays.encode(np.asarray(value))))


def _block(b: DataBlock) -> pb.DataBlock:
    return pb.DataBlock(offset=b.offset, data=to_message(pb.Array, b.data), shape=b.shape)


def _node(n: NodeDescription) -> pb.NodeDescription:
    msg = pb.NodeDescription(node=n.node, kind=n.kind)
    if n.shape is not None:
        msg.shape.CopyFrom(to_message(pb.DatasetShape, n.shape))
    for k, v in n.attributes.items():
        msg.attributes[k].CopyFrom(_value_out(v))
    return msg


def _append_part(msg: pb.AppendRequest) -> AppendPart:
    return AppendPart(
        _ref(msg.node),
        msg.data,
        _optional(msg, "grow_dimension"),
        msg.sequence,
        _optional(msg, "expected_length"),
    )


class DatasetsServicer(datasets_pb2_grpc.DatasetsServicer):
    def __init__(self, datasets: DatasetService, limits: StreamLimits) -> None:
        self._datasets = datasets
        self._limits = limits

    @grpc_errors
    def StoreData(self, request: pb.StoreDataRequest, context: grpc.ServicerContext):
        shape = self._datasets.store_data(_ref(request.node), request.data)
        return to_message(pb.DatasetShape, shape)

    @grpc_errors
    def AppendData(self, request: pb.AppendDataRequest, context: grpc.ServicerContext):
        ack = self._datasets.append_data(
            _ref(request.node),
            request.data,
            _optional(request, "grow_dimension"),
            request.close_file,
        )
        return to_message(pb.AppendAck, ack)

    @grpc_errors
    def Append(self, request_iterator: Iterator[pb.AppendRequest], context: grpc.ServicerContext):
        with self._limits.stream("append", context) as stream:
            parts = (_append_part(m) for m in stream.receive(request_iterator))
            for ack in self._datasets.append_stream(parts, stream.working):
                with stream.waiting():
                    yield to_message(pb.AppendAck, ack)

    @grpc_errors
    def GetData(self, request: pb.GetDataRequest, context: grpc.ServicerContext):
        array = self._datasets.get_data(_ref(request.node), _items(request.selection))
        return to_message(pb.Array, array)

    @grpc_errors
    def ReadData(self, request: pb.GetDataRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            blocks = self._datasets.read_data(_ref(request.node), _items(request.selection))
            yield from stream.send((_block(b), reserved) for b, reserved in blocks)

    @grpc_errors
    def Follow(self, request: pb.FollowRequest, context: grpc.ServicerContext):
        with self._limits.stream("follow", context) as stream:
            blocks = self._datasets.follow(
                _ref(request.node),
                request.from_row,
                _optional(request, "grow_dimension"),
                context.is_active,
            )
            yield from stream.send((_block(b), reserved) for b, reserved in blocks)

    @grpc_errors
    def GetDataShape(self, request: pb.NodeRef, context: grpc.ServicerContext):
        return to_message(pb.DatasetShape, self._datasets.get_data_shape(_ref(request)))

    @grpc_errors
    def SetMetadata(self, request: pb.SetMetadataRequest, context: grpc.ServicerContext):
        values = {k: _value_in(v) for k, v in request.metadata.items()}
        self._datasets.set_metadata(_ref(request.node), values, request.tvb_specific_metadata)
        return pb.SetMetadataResponse()

    @grpc_errors
    def GetMetadata(self, request: pb.NodeRef, context: grpc.ServicerContext):
        values = self._datasets.get_metadata(_ref(request))
        return pb.Metadata(metadata={k: _value_out(v) for k, v in values.items()})

    @grpc_errors
    def RemoveMetadata(self, request: pb.RemoveMetadataRequest, context: grpc.ServicerContext):
        removed = self._datasets.remove_metadata(
            _ref(request.node), request.key, request.tvb_specific_metadata, request.check_existence
        )
        return pb.RemoveMetadataResponse(removed=removed)

    @grpc_errors
    def RemoveData(self, request: pb.NodeRef, context: grpc.ServicerContext):
        self._datasets.remove_data(_ref(request))
        return pb.RemoveDataResponse()

    @grpc_errors
    def IsValidFile(self, request: pb.NodeRef, context: grpc.ServicerContext):
        return pb.IsValidFileResponse(valid=self._datasets.is_valid_file(_ref(request)))

    @grpc_errors
    def CloseFile(self, request: pb.NodeRef, context: grpc.ServicerContext):
        self._datasets.close_file(_ref(request))
        return pb.CloseFileResponse()

    @grpc_errors
    def Describe(self, request: pb.NodeRef, context: grpc.ServicerContext):
        described = self._datasets.describe(_ref(request))
        return pb.FileDescription(
            path=described.path, size=described.size, nodes=[_node(n) for n in described.nodes]
        )
