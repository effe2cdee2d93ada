using System.Buffers;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.WireFormat;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// The source's value deserializer: decodes a point message straight from librdkafka's buffer, during
/// <c>Consume</c>, into the decoder's arrays, so no managed copy of the message is made (the stock <c>byte[]</c>
/// deserializer allocates one per message: 12.5 KB for 1,000 points, the consumer thread's largest source of
/// garbage and of collections). The points are written to the partition's writer afterwards, once the result
/// says which partition it came from.
/// </summary>
/// <remarks>Runs on the consumer thread only, like the decoder it uses.</remarks>
internal sealed unsafe class PointMessageDeserializer(PointBatchDecoder decoder) : IDeserializer<PreparedPointMessage>, IDisposable
{
    private readonly NativeBytes _bytes = new();

    public PreparedPointMessage Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context)
    {
        fixed (byte* start = data)
        {
            // PERF: the memory is valid only inside this call; the decoder keeps nothing that points into it
            // (points are copied into its own arrays, series tables compared or copied).
            _bytes.Reset(start, data.Length);
            try
            {
                PointDecodeResult result = decoder.Prepare(_bytes.Memory);
                return new PreparedPointMessage(result, data.Length, result.Succeeded ? null : data.ToArray());
            }
            finally
            {
                _bytes.Reset(null, 0);
            }
        }
    }

    public void Dispose() => ((IDisposable)_bytes).Dispose();

    /// <summary>A <see cref="Memory{T}"/> over bytes that are not on the managed heap and already pinned (librdkafka's).</summary>
    private sealed class NativeBytes : MemoryManager<byte>
    {
        private byte* _start;
        private int _length;

        public void Reset(byte* start, int length)
        {
            _start = start;
            _length = length;
        }

        public override Span<byte> GetSpan() => new(_start, _length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(_start + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
