using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.WireFormat;

namespace Monitoring.Stream.Server.Service;

/// <summary>One request at a time writes through a lane: its own writer (a writer is for one thread at a time) and decoder (not thread-safe).</summary>
internal sealed class IngestLane(PointWriter writer, PointBatchDecoder decoder) : IDisposable
{
    /// <summary>The lane's writer (source <c>http</c>).</summary>
    public PointWriter Writer { get; } = writer;

    /// <summary>The lane's MessagePack decoder.</summary>
    public PointBatchDecoder Decoder { get; } = decoder;

    /// <inheritdoc />
    public void Dispose() => Writer.Dispose();
}
