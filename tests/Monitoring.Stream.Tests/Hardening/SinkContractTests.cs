using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Sinks that break the contract in other ways: throwing synchronously, failing to complete or dispose.</summary>
public class SinkContractTests
{
    /// <summary>A sink that is not async: it throws from the call itself, from completion, or from disposal.</summary>
    private sealed class RudeSink(string name, bool throwOnWrite, bool throwOnComplete, bool throwOnDispose) : IWindowSink
    {
        private int _writes;

        public string Name => name;

        public int Writes => Volatile.Read(ref _writes);

        public bool Disposed { get; private set; }

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _writes);
            return throwOnWrite ? throw new InvalidDataException("rude write") : ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) =>
            throwOnComplete ? throw new IOException("rude complete") : ValueTask.CompletedTask;

        public ValueTask DisposeAsync()
        {
            Disposed = true;
            return throwOnDispose ? throw new IOException("rude dispose") : ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task Sink_ThrowsSynchronously_RetriedThenFailed_CountsExact()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var rude = new RudeSink("rude", throwOnWrite: true, throwOnComplete: false, throwOnDispose: false);
        var options = new SinkOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.Zero, MaxBackoff = TimeSpan.Zero };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(rude, options)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 3);
        }

        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(3, m.Sinks[0].BatchesFailed);
        Assert.Equal(6, m.Sinks[0].Errors);
        Assert.Equal(6, rude.Writes);
        Assert.Contains("rude write", m.Sinks[0].LastError);
    }

    [Fact]
    public async Task Sink_CompleteAndDisposeThrow_StopCompletesErrorCountedOtherSinksDisposed()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var rude = new RudeSink("rude", throwOnWrite: false, throwOnComplete: true, throwOnDispose: true);
        var polite = new RudeSink("polite", throwOnWrite: false, throwOnComplete: false, throwOnDispose: false);
        var pipeline = new MetricsPipeline(Scenario.Options(time), [rude, polite]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 2);
        }

        await pipeline.StopAsync().Within("stop past a sink whose completion throws");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        SinkMetrics r = m.Sinks.Single(s => s.Name == "rude");
        Assert.Equal(2, r.BatchesWritten);
        Assert.Equal(1, r.Errors);
        Assert.Contains("rude complete", r.LastError);

        await pipeline.DisposeAsync().AsTask().Within("dispose past a sink whose disposal throws");
        Assert.True(rude.Disposed);
        Assert.True(polite.Disposed);
    }
}
