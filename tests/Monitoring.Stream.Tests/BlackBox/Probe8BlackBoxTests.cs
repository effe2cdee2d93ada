using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 8 (black box, from README.md and docs/event-time.md only): writers that hand batches over from many threads,
/// the engine's flush of quiet writers from its timer thread, graceful and forced stops while Wait writers wait on a
/// full shard, snapshots taken while points move, and a Wait writer held back longer than SourceIdleTimeout. Every
/// caller's return value is tallied and compared per series and window with what the sink received.
/// </summary>
public class Probe8BlackBoxTests
{
    private enum Kind
    {
        OwnWait,
        OwnWaitRecreating,
        OwnDrop,
        SharedWait,
        SharedDrop,
    }

    /// <summary>One producing thread: its source, how it writes, what it was told.</summary>
    private sealed class Producer(int index, Kind kind, string source, int points)
    {
        public int Index { get; } = index;

        public Kind Kind { get; } = kind;

        public string Source { get; } = source;

        public int Points { get; } = points;

        public string Metric => "p8_" + Source.Replace('-', '_');

        public BackpressureMode Mode => Kind is Kind.OwnDrop or Kind.SharedDrop ? BackpressureMode.DropNewest : BackpressureMode.Wait;

        public Probe8Ledger Ledger { get; } = new();

        public Exception? Failure { get; set; }

        public int Pauses { get; set; }
    }

    private static long Now(TimeProvider time) => time.GetUtcNow().ToUnixTimeMilliseconds();

    private static long WindowOf(long ts, long windowMs) => ts - (((ts % windowMs) + windowMs) % windowMs);

    /// <summary>Waits (bounded in real time) until the fake clock, moved by another thread, has passed <paramref name="until"/>.</summary>
    private static void WaitForClock(TimeProvider time, long until)
    {
        var bound = Stopwatch.StartNew();
        while (Now(time) < until)
        {
            Assert.True(bound.Elapsed < Signals.Bound, $"the clock did not reach {until} within {Signals.Bound.TotalSeconds} s");
            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// One pipeline driven by a clock thread (20 ms of fake time per real millisecond or so: the engine's flush of quiet
    /// writers and its ticks run on that thread while the producers write) with producers of every kind: own writers
    /// (one of them disposed and created again by its own thread every few hundred points), shared writers with long
    /// threads and with waves of short-lived threads that end with points buffered, bursts then pauses of two flush
    /// intervals. Returns the problems found (empty when every accepted point is where it belongs).
    /// </summary>
    private static async Task<List<string>> RunWriterScenario(int batchSize, int shards, int queueBatches, bool dropsPossible, int pointsPerProducer)
    {
        FakeTimeProvider time = Scenario.Clock(Scenario.T0);
        MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards, windowMs: 1000, latenessMs: 0, idleMs: 3_600_000);
        options.BatchSize = batchSize;
        options.ShardQueueBatches = queueBatches;
        options.ShutdownTimeout = TimeSpan.FromDays(1);
        options.MaxPointAge = TimeSpan.FromHours(2);
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(options, [sink]);
        var problems = new List<string>();
        try
        {
            pipeline.Start();
            var producers = new List<Producer>
            {
                new(0, Kind.OwnWait, "own-wait-a", pointsPerProducer),
                new(1, Kind.OwnWait, "own-wait-b", pointsPerProducer),
                new(2, Kind.OwnWaitRecreating, "own-wait-recreated", pointsPerProducer),
                new(3, Kind.OwnDrop, "own-drop", pointsPerProducer),
                new(4, Kind.SharedWait, "shared-wait", pointsPerProducer),
                new(5, Kind.SharedDrop, "shared-drop", pointsPerProducer),
                new(6, Kind.SharedDrop, "shared-drop", pointsPerProducer),
            };
            for (int i = 0; i < 12; i++)
            {
                producers.Add(new Producer(7 + i, Kind.SharedWait, "shared-wait", pointsPerProducer / 8));
            }

            SharedPointWriter sharedWait = pipeline.CreateSharedWriter("shared-wait", BackpressureMode.Wait);
            SharedPointWriter sharedDrop = pipeline.CreateSharedWriter("shared-drop", BackpressureMode.DropNewest);
            using var clockDone = new CancellationTokenSource();
            Task clock = Task.Factory.StartNew(
                () =>
                {
                    while (!clockDone.IsCancellationRequested)
                    {
                        time.Advance(TimeSpan.FromMilliseconds(20));
                        Thread.Sleep(1);
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
            using var snapshotsDone = new CancellationTokenSource();
            Task<int> snapshots = Probe8Ledger.SnapshotLoop(pipeline, snapshotsDone.Token);

            // Long-lived threads at once; the short-lived shared threads in waves of 4.
            var threads = producers.Take(7).Select(p => Start(p, pipeline, sharedWait, sharedDrop, time, batchSize)).ToList();
            foreach (Producer[] wave in producers.Skip(7).Chunk(4))
            {
                var waveThreads = wave.Select(p => Start(p, pipeline, sharedWait, sharedDrop, time, batchSize)).ToList();
                foreach (Thread t in waveThreads)
                {
                    Assert.True(t.Join(Signals.Bound * 2), $"short-lived producer {t.Name} did not end");
                }
            }

            foreach (Thread t in threads)
            {
                Assert.True(t.Join(Signals.Bound * 2), $"producer {t.Name} did not end");
            }

            foreach (Producer p in producers)
            {
                Assert.True(p.Failure is null, $"{p.Source} #{p.Index}: {p.Failure}");
            }

            // Let the engine's flush take what the short-lived threads left buffered, then stop gracefully.
            WaitForClock(time, Now(time) + 1_000);
            await clockDone.CancelAsync();
            await clock.Within("the clock thread");
            await pipeline.StopAsync().Within("the graceful stop");
            await snapshotsDone.CancelAsync();
            Assert.True(await snapshots.Within("the snapshot loop") > 0, "no snapshot was taken");
            sharedWait.Dispose();
            sharedDrop.Dispose();

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(producers.Sum(p => p.Ledger.Calls), m.Offered);
            Assert.Equal(0, m.Rejected);
            if (m.Late != 0)
            {
                problems.Add($"late {m.Late} ({string.Join(", ", m.LateByMetric.Where(l => l.Value > 0))}): every producer wrote in order and no source was idle");
            }

            if (!dropsPossible && m.Dropped != 0)
            {
                problems.Add($"dropped {m.Dropped} ({string.Join(", ", m.DroppedByReason.Where(d => d.Value > 0))}) with a queue that cannot fill");
            }

            IReadOnlyList<WindowRow> rows = sink.Rows;
            foreach (IGrouping<string, Producer> source in producers.GroupBy(p => p.Source))
            {
                long told = source.Sum(p => p.Ledger.Told(RejectReason.None));
                long calls = source.Sum(p => p.Ledger.Calls);
                SourceMetrics[] s = [.. m.Sources.Where(x => x.Source == source.Key)];
                long offered = s.Sum(x => x.Offered), accepted = s.Sum(x => x.Accepted), dropped = s.Sum(x => x.Dropped);
                string metric = source.First().Metric;
                long emitted = rows.Where(r => r.Metric == metric).Sum(r => r.Count);
                if (offered != calls || accepted + dropped != told || s.Sum(x => x.Rejected) != calls - told)
                {
                    problems.Add($"{source.Key}: calls {calls}, told accepted {told}; engine offered {offered}, accepted {accepted}, dropped {dropped}");
                }

                if (emitted + m.LateByMetric.GetValueOrDefault(metric) != accepted)
                {
                    problems.Add($"{source.Key}: accepted {accepted}, emitted {emitted}, late {m.LateByMetric.GetValueOrDefault(metric)}");
                }

                if (source.First().Mode == BackpressureMode.Wait && dropped != 0)
                {
                    problems.Add($"{source.Key} (Wait): dropped {dropped}");
                }
            }

            var exactMetrics = producers.Where(p => !dropsPossible || p.Mode == BackpressureMode.Wait).Select(p => p.Metric).ToHashSet();
            problems.AddRange(Probe8Ledger.Compare(producers.Select(p => p.Ledger), rows, key => exactMetrics.Any(mt => key.StartsWith(mt + "{", StringComparison.Ordinal) || key == mt)));
            return problems;
        }
        finally
        {
            await EventTimeBlackBoxTests.StopBounded(pipeline);
        }
    }

    private static Thread Start(Producer p, MetricsPipeline pipeline, SharedPointWriter sharedWait, SharedPointWriter sharedDrop, FakeTimeProvider time, int batchSize)
    {
        var thread = new Thread(() => Produce(p, pipeline, sharedWait, sharedDrop, time, batchSize)) { IsBackground = true, Name = $"{p.Source}#{p.Index}" };
        thread.Start();
        return thread;
    }

    /// <summary>
    /// Writes <see cref="Producer.Points"/> valid, in-order points in bursts of 1 to 3 batches; after every third burst
    /// (at most 12 times) it pauses until the fake clock has moved two flush intervals, so the engine's timer hands its
    /// partly filled batch over from the clock thread. Points go to three timed series (one written by id) and one
    /// untimed series; every value is a distinct integer, so counts, sums, minima and maxima are exact.
    /// </summary>
    private static void Produce(Producer p, MetricsPipeline pipeline, SharedPointWriter sharedWait, SharedPointWriter sharedDrop, FakeTimeProvider time, int batchSize)
    {
        PointWriter? own = null;
        try
        {
            var random = new Random(p.Index * 7919);
            string t = p.Index.ToString(CultureInfo.InvariantCulture);
            Label[][] labels = [.. Enumerable.Range(0, 3).Select(k => new[] { new Label("t", t), new Label("k", "k" + k) })];
            Label[] untimed = [new("t", t), new("k", "untimed")];
            string[] keys = [.. labels.Select(l => Probe8Ledger.Key(p.Metric, l))];
            string untimedKey = Probe8Ledger.Key(p.Metric, untimed);
            SeriesId byId = pipeline.Registry.GetOrAdd(p.Metric, labels[0]);
            SharedPointWriter? shared = p.Kind switch
            {
                Kind.SharedWait => sharedWait,
                Kind.SharedDrop => sharedDrop,
                _ => null,
            };
            if (shared is null)
            {
                own = pipeline.CreateWriter(p.Source, p.Mode);
            }
            else
            {
                // The thread's source is created by its first write: stamped by the engine, so it cannot be late.
                double v0 = -((p.Index + 1) * 1_000_000.0);
                p.Ledger.Record(shared.Write(p.Metric, untimed, v0), untimedKey, Probe8Ledger.AnyWindow, v0);
            }

            int written = 0, bursts = 0;
            while (written < p.Points)
            {
                int burst = Math.Min(p.Points - written, random.Next(1, (3 * batchSize) + 2));
                for (int b = 0; b < burst; b++, written++)
                {
                    if (p.Kind == Kind.OwnWaitRecreating && written > 0 && written % 300 == 0)
                    {
                        own!.Dispose(); // from the owning thread, mid-stream, with points buffered
                        own = pipeline.CreateWriter(p.Source, p.Mode);
                    }

                    double value = ((p.Index + 1) * 1_000_000.0) + written;
                    if (written % 4 == 3)
                    {
                        value = -value;
                    }

                    int k = written % 5;
                    if (k == 4)
                    {
                        RejectReason u = own is not null ? own.Write(p.Metric, untimed, value) : shared!.Write(p.Metric, untimed, value);
                        p.Ledger.Record(u, untimedKey, Probe8Ledger.AnyWindow, value);
                        continue;
                    }

                    k %= 3;
                    long ts = Now(time); // read after the source exists: an in-order point that can never be late
                    RejectReason r = (k, own) switch
                    {
                        (0, not null) => own.Write(byId, value, ts),
                        (0, null) => shared!.Write(byId, value, ts),
                        (_, not null) => own.Write(p.Metric, labels[k], value, ts),
                        (_, null) => shared!.Write(p.Metric, labels[k], value, ts),
                    };
                    p.Ledger.Record(r, keys[k], WindowOf(ts, 1000), value);
                }

                if (++bursts % 3 == 0 && p.Pauses < 12)
                {
                    p.Pauses++;
                    WaitForClock(time, Now(time) + 400);
                }
            }

            own?.Dispose();
        }
        catch (Exception e)
        {
            p.Failure = e;
            own?.Dispose();
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(512)]
    public async Task Writers_ManyThreadsBurstsPausesDisposalsAndTwoPipelinesAtOnce_EveryAcceptedPointInItsSeriesAndWindowExactly(int batchSize)
    {
        int points = batchSize <= 3 ? 1_500 : 6_000;

        // Two pipelines at once: one whose queues are small (Wait writers wait, DropNewest writers drop), one whose
        // queues cannot fill (nothing may be dropped, every source exact).
        Task<List<string>> small = Task.Run(() => RunWriterScenario(batchSize, shards: 2, queueBatches: 2, dropsPossible: true, points));
        Task<List<string>> large = Task.Run(() => RunWriterScenario(batchSize, shards: 3, queueBatches: 1 << 20, dropsPossible: false, points));
        Task both = Task.WhenAll(small, large);
        Assert.True(ReferenceEquals(both, await Task.WhenAny(both, Task.Delay(TimeSpan.FromSeconds(45)))), "the two pipelines did not finish within 45 s");
        List<string> smallProblems = await small;
        List<string> largeProblems = await large;
        Assert.True(smallProblems.Count == 0, "small queues:\n" + string.Join("\n", smallProblems.Take(20)));
        Assert.True(largeProblems.Count == 0, "large queues:\n" + string.Join("\n", largeProblems.Take(20)));
    }
}
