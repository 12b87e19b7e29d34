"""TensorBoard's `Event` message for protobuf's own parser, without importing tensorflow or
tensorboard (seconds at start-up, and often not installed where urbanrun runs).

The schema is the subset of tensorflow/core/util/event.proto, framework/summary.proto and
framework/tensor.proto that scalars need, with the same field numbers; protobuf skips every
other field (images, histograms, graph defs) as unknown. It lives in a private descriptor pool,
so it never clashes with tensorboard's own classes when both are loaded."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
PACKAGE = "urbanrun_tb"

# message -> [(name, number, type, label, message type name)]
MESSAGES = {
    "Event": [("wall_time", 1, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, None),
              ("step", 2, _F.TYPE_INT64, _F.LABEL_OPTIONAL, None),
              ("summary", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Summary")],
    "Summary": [("value", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Value")],
    "Value": [("tag", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
              ("simple_value", 2, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, None),
              ("tensor", 8, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Tensor"),
              ("metadata", 9, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Metadata")],
    "Metadata": [("plugin_data", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "PluginData")],
    "PluginData": [("plugin_name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None)],
    "Tensor": [("dtype", 1, _F.TYPE_INT32, _F.LABEL_OPTIONAL, None),
               ("tensor_shape", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Shape"),
               ("tensor_content", 4, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, None),
               ("float_val", 5, _F.TYPE_FLOAT, _F.LABEL_REPEATED, None),
               ("double_val", 6, _F.TYPE_DOUBLE, _F.LABEL_REPEATED, None),
               ("int_val", 7, _F.TYPE_INT32, _F.LABEL_REPEATED, None),
               ("int64_val", 10, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
               ("half_val", 13, _F.TYPE_INT32, _F.LABEL_REPEATED, None)],
    "Shape": [("dim", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Dim")],
    "Dim": [("size", 1, _F.TYPE_INT64, _F.LABEL_OPTIONAL, None)],
}


def _classes() -> dict:
    file = descriptor_pb2.FileDescriptorProto(name="urbanrun_tensorboard_event.proto", package=PACKAGE,
                                              syntax="proto2")
    for name, fields in MESSAGES.items():
        message = file.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            spec = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                spec.type_name = f".{PACKAGE}.{type_name}"
            if label == _F.LABEL_REPEATED and kind != _F.TYPE_MESSAGE:
                spec.options.packed = True  # TensorFlow writes them packed (proto3); unpacked parses too
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}


Event = _classes()["Event"]
