using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>A sink that runs the remote-write encoder on the pipeline's real Arrow batches and keeps the requests.</summary>
internal sealed class EncodingSink : IWindowSink
{
    private readonly List<EncodedRequest> _requests = [];

    public EncodingSink(int lanes = 2, int maxRequestBytes = 1 << 20, int maxTrackedSeries = 1_000_000, TimeSpan? idle = null) =>
        Encoder = new RemoteWriteEncoder(lanes, maxRequestBytes, maxTrackedSeries, idle ?? TimeSpan.FromMinutes(15), _requests.Add);

    public RemoteWriteEncoder Encoder { get; }

    public IReadOnlyList<EncodedRequest> Requests => _requests;

    public List<DecodedSample> Samples => [.. _requests.SelectMany(r => RemoteWriteRequestReader.Decode(r.Body))];

    public string Name => "encode";

    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        Encoder.Encode(batch.RecordBatch, batch.WindowEndUnixMs, batch.Instance);
        return ValueTask.CompletedTask;
    }

    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
