using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 7 (black box, docs/event-time.md "Stopping"): a write refused as <see cref="RejectReason.WriterClosed"/> because
/// the stop had begun must be the writer's last accepted answer. Found: a write on the slow path between the stop setting
/// its state and closing that writer's bounds was told WriterClosed, and the same thread's next writes were accepted
/// again (about 10 of 20 rounds).
/// </summary>
public class StopRaceProbe7BlackBoxTests
{
    [Fact]
    public async Task Write_RefusedAsClosedWhileTheStopBegins_EveryLaterWriteOfThatThreadRefusedToo()
    {
        int rounds = 0;
        var failures = new List<string>();
        for (int round = 0; round < 20; round++)
        {
            FakeTimeProvider time = Scenario.Clock(Scenario.T0);
            MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 2, windowMs: 1000, latenessMs: 0, idleMs: 60_000);
            var sink = new CollectingSink();
            await using var pipeline = new MetricsPipeline(options, [sink]);
            pipeline.Start();
            PointWriter writer = pipeline.CreateWriter("closing", BackpressureMode.DropNewest);
            Label[] labels = [new("a", "b")];
            using var started = new ManualResetEventSlim();
            var after = new List<RejectReason>();
            long told = 0;
            var thread = new Thread(() =>
            {
                long i = 0;
                while (true)
                {
                    // Every third write is out of range: the slow path, which reads the pipeline's state.
                    RejectReason r = writer.Write("p7_closing", labels, i % 3 == 0 ? double.MaxValue : 1, Scenario.T0);
                    told++;
                    if (++i == 1000)
                    {
                        started.Set();
                    }

                    if (r == RejectReason.WriterClosed)
                    {
                        break;
                    }
                }

                for (int k = 0; k < 20; k++)
                {
                    after.Add(writer.Write("p7_closing", labels, 1, Scenario.T0));
                    told++;
                }
            })
            { IsBackground = true };
            thread.Start();
            Assert.True(started.Wait(Signals.Bound), "the writer did not start");
            await pipeline.StopAsync().Within("the stop");
            Assert.True(thread.Join(Signals.Bound), "the writer thread did not end");
            rounds++;
            if (after.Any(r => r != RejectReason.WriterClosed))
            {
                failures.Add($"round {round}: after WriterClosed: {string.Join(",", after.Distinct())}");
            }

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(told, m.Offered);
            Assert.Equal(m.Accepted, sink.Rows.Sum(r => r.Count) + m.Late);
        }

        Assert.Equal(20, rounds);
        Assert.Empty(failures);
    }
}
