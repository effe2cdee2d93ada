using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Prometheus.Tests.Support;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>
/// A receiver that is down shows in the pipeline's own sink state, although the sink acknowledges each window
/// once it is in its queue: health checks and dashboards read that state.
/// </summary>
public sealed class RemoteWriteDeliveryStatusTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    private static async Task Until(Func<bool> condition, string what)
    {
        using var expired = new CancellationTokenSource(s_wait);
        while (!condition())
        {
            Assert.False(expired.IsCancellationRequested, "not within 30 s: " + what);
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task SinkState_ReceiverAnswers503ThenRecovers_PipelineShowsRetryingWithTheErrorThenOk()
    {
        bool down = true;
        await using var stub = new RemoteWriteStub(_ => Volatile.Read(ref down) ? new StubResponse(503, Body: "receiver down") : StubResponse.NoContent);
        await using var sink = new RemoteWriteSink(new RemoteWriteSinkOptions
        {
            Endpoint = stub.Endpoint,
            MaxConcurrentRequests = 1,
            MinBackoff = TimeSpan.FromMilliseconds(10),
            MaxBackoff = TimeSpan.FromMilliseconds(50),
            Timeout = TimeSpan.FromSeconds(5),
        });
        long start = PipelineDriver.WindowStartBeforeNow(5);
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(start + (3 * PipelineDriver.WindowMs)));
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 1, WindowSize = TimeSpan.FromMilliseconds(PipelineDriver.WindowMs), AllowedLateness = TimeSpan.Zero, TimeProvider = time },
            [sink]);
        pipeline.Start();
        SeriesId id = pipeline.Registry.GetOrAdd("delivery_seconds", [new Label("route", "/a")]);
        using (PointWriter writer = pipeline.CreateWriter("test"))
        {
            // The second window's point closes the first: the sink takes it into its queue and the receiver refuses it.
            Assert.Equal(RejectReason.None, writer.Write(id, 1.5, start + 1));
            Assert.Equal(RejectReason.None, writer.Write(id, 2.5, start + PipelineDriver.WindowMs + 1));
            writer.Flush();
        }

        await Until(() => pipeline.GetMetrics().Sinks[0].State == SinkState.Retrying, "the pipeline's sink state turning Retrying");
        SinkMetrics retrying = pipeline.GetMetrics().Sinks[0];
        Assert.Contains("503", retrying.LastError, StringComparison.Ordinal);
        Assert.Equal(1, retrying.BatchesWritten);

        Volatile.Write(ref down, false);
        await Until(() => pipeline.GetMetrics().Sinks[0].State == SinkState.Ok && sink.SamplesSent > 0, "recovery");
        Assert.Equal(0, sink.SamplesDropped);
        await pipeline.StopAsync();
    }
}
