using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

/// <summary>
/// A black-box probe of commit segments from the documents alone (docs/kafka.md, "Offsets: at-least-once",
/// "Segments", "Duplicates and how to remove them"; docs/configuration.md, Kafka:SegmentInterval): each test tries to
/// break one promise through the public API and librdkafka's mock cluster.
/// </summary>
public class SegmentProbeTests
{
    private const int Partitions = 4;
    private const int PointsPerMessage = 10;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A message of <see cref="PointsPerMessage"/> points of 5 series of the partition, each with the value
    /// <paramref name="offset"/> (a row's min and max tell which offsets its points came from), at event time
    /// <paramref name="timestamp"/>.
    /// </summary>
    private static byte[] Message(int partition, long offset, long timestamp)
    {
        var encoder = new PointBatchEncoder();
        for (int i = 0; i < PointsPerMessage; i++)
        {
            encoder.Add("probe_total", [new("partition", partition.ToString(CultureInfo.InvariantCulture)), new("k", (i % 5).ToString(CultureInfo.InvariantCulture))], offset, timestamp + i);
        }

        return encoder.ToArray();
    }

    private static KafkaPointSourceOptions Options(KafkaMockCluster cluster, string topic, string group, TimeSpan segments, TimeSpan commits, TimeSpan? revokeTimeout = null)
    {
        var options = new KafkaPointSourceOptions
        {
            BootstrapServers = cluster.BootstrapServers,
            Topic = topic,
            GroupId = group,
            CommitInterval = commits,
            SegmentInterval = segments,
            RevokeTimeout = revokeTimeout ?? TimeSpan.FromSeconds(10),
            CloseTimeout = TimeSpan.FromSeconds(5),
        };
        options.ClientSettings["heartbeat.interval.ms"] = "100";
        options.ClientSettings["session.timeout.ms"] = "6000";
        return options;
    }

    private static int PartitionOf(AggregateRow row) => int.Parse(row.Labels.Single(l => l.Name == "partition").Value, CultureInfo.InvariantCulture);

    /// <summary>Watches a source's committed offsets from outside while it runs.</summary>
    private sealed class CommitWatcher : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _task;

        public CommitWatcher(KafkaPointSource source, Action<IReadOnlyDictionary<int, long>>? check = null)
        {
            _task = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    IReadOnlyDictionary<int, long> committed = source.GetMetrics().CommittedOffsets;
                    foreach ((int p, long o) in committed)
                    {
                        Seen.Add((p, o));
                    }

                    check?.Invoke(committed);
                    await Task.Delay(3);
                }
            });
        }

        public ConcurrentBag<(int Partition, long Offset)> Seen { get; } = [];

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _task; // rethrows a failed check
            _stop.Dispose();
        }
    }

    /// <summary>
    /// An in-process sink that keeps each batch's rows with the header text the Kafka sink would write, counts the
    /// points it acknowledged per partition (before returning), and can be made to block or to throw.
    /// </summary>
    private sealed class ProbeSink(Func<WindowBatch, string> describe) : IWindowSink
    {
        private readonly Lock _gate = new();
        private readonly List<(IReadOnlyList<SourceOffsetRange> Ranges, List<AggregateRow> Rows)> _batches = [];
        private readonly long[] _acknowledged = new long[Partitions];

        public string Name => "probe";

        /// <summary>While not completed, every write waits for it (a sink that hangs).</summary>
        public TaskCompletionSource Open { get; set; } = CompletedGate();

        /// <summary>While true, every write throws (a broken sink).</summary>
        public volatile bool Failing;

        public long Failures;

        public List<(IReadOnlyList<SourceOffsetRange> Ranges, List<AggregateRow> Rows)> Batches
        {
            get
            {
                lock (_gate)
                {
                    return [.. _batches];
                }
            }
        }

        public long AcknowledgedPoints(int partition)
        {
            lock (_gate)
            {
                return _acknowledged[partition];
            }
        }

        /// <summary>Lets every write through again (in a test's finally, so that a failed test's pipeline can stop).</summary>
        public void Release()
        {
            Failing = false;
            Open.TrySetResult();
        }

        public static TaskCompletionSource CompletedGate()
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            gate.SetResult();
            return gate;
        }

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            await Open.Task.WaitAsync(cancellationToken);
            if (Failing)
            {
                // A real pause, so that retries without backoff do not spin.
                await Task.Delay(5, cancellationToken);
                Interlocked.Increment(ref Failures);
                throw new IOException("probe: the sink is down");
            }

            IReadOnlyList<SourceOffsetRange> ranges = SourceOffsetRange.Parse(describe(batch));
            List<AggregateRow> rows = AggregateRows.Read(batch.RecordBatch);
            lock (_gate)
            {
                _batches.Add((ranges, rows));
                foreach (AggregateRow row in rows)
                {
                    _acknowledged[PartitionOf(row)] += row.Count;
                }
            }
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>Runs an action when disposed.</summary>
    private sealed class OnExit(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    /// <summary>Fails if a message's range of a partition straddles any of the commits, or does not hold its rows' offsets.</summary>
    private static void AssertNoStraddle(IEnumerable<(IReadOnlyList<SourceOffsetRange> Ranges, IReadOnlyList<AggregateRow> Rows)> messages, IReadOnlyCollection<(int Partition, long Offset)> commits, string topic)
    {
        foreach ((IReadOnlyList<SourceOffsetRange> ranges, IReadOnlyList<AggregateRow> rows) in messages)
        {
            foreach (AggregateRow row in rows)
            {
                int partition = PartitionOf(row);
                SourceOffsetRange range = Assert.Single(ranges, r => r.Partition == partition && r.Topic == topic);
                Assert.True(row.Min >= range.Low && row.Max <= range.High, $"{row.SeriesKey} window {row.WindowStartUnixMs}: offsets {row.Min}..{row.Max} outside the header's {range.Low}-{range.High}");
            }

            foreach ((int partition, long offset) in commits)
            {
                foreach (SourceOffsetRange range in ranges.Where(r => r.Partition == partition && r.Low <= r.High))
                {
                    Assert.True(range.High < offset || range.Low >= offset, $"partition {partition}: message range {range.Low}-{range.High} straddles the commit at {offset}");
                }
            }
        }
    }

    /// <summary>
    /// Promise 1 and 5: windows that close by event time between cuts, four partitions, the real Kafka sink and reader,
    /// extreme intervals (1 ms segments under a 500 ms commit interval; 100 ms segments): every point exactly once, no
    /// aggregate message straddles any commit seen while running or the final one, every partition committed to its end.
    /// </summary>
    [Theory]
    [InlineData(1, 500)]
    [InlineData(100, 20)]
    public async Task Cuts_WindowsClosingByEventTimeBetweenCuts_NoMessageStraddlesAnyCommitEveryPointOnce(int segmentMs, int commitMs)
    {
        using var cluster = new KafkaMockCluster();
        string points = $"probe-et-{segmentMs}", aggregates = $"probe-et-{segmentMs}.aggregates", group = $"g-et-{segmentMs}";
        cluster.EnsureTopic(points);
        cluster.EnsureTopic(aggregates);
        KafkaPointSource? described = null;
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = cluster.BootstrapServers, Topic = aggregates, SourceOffsets = b => described!.DescribeSourceOffsets(b) });
        await using MetricsPipeline pipeline = Create(sink, time);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, Options(cluster, points, group, TimeSpan.FromMilliseconds(segmentMs), TimeSpan.FromMilliseconds(commitMs)));
        described = source;
        source.Start();
        await source.FirstAssignment.WaitAsync(s_timeout);

        // 8 rounds, one message a partition each, 3 s of event time apart (the fake clock follows): 10 s windows close
        // by event time (watermark = the partitions' progress - 5 s lateness) while cuts fall between and inside rounds.
        const int Rounds = 8;
        await using (var watcher = new CommitWatcher(source))
        {
            for (int round = 0; round < Rounds; round++)
            {
                long ts = T0 + (round * 3000L);
                KafkaTestClient.Produce(cluster.BootstrapServers, points, Enumerable.Range(0, Partitions).Select(p => (p, Message(p, round, ts))));
                time.Advance(TimeSpan.FromSeconds(3));
                await Eventually.True(() => source.GetMetrics().Messages == (round + 1) * Partitions, s_timeout, () => source.GetMetrics().ToString());
            }

            // Let a few commits happen while running, then stop (the last cut, and the commit at the stop).
            await Eventually.True(() => source.GetMetrics().CommittedOffsets.Values.Sum() > 0, s_timeout, () => source.GetMetrics().ToString());
            await source.StopAsync();
            await pipeline.StopAsync();

            KafkaSourceMetrics metrics = source.GetMetrics();
            Assert.True(metrics.Cuts >= 2, metrics.ToString());
            Assert.Equal(0, metrics.CutTimeouts);
            long[] final = KafkaTestClient.Committed(cluster.BootstrapServers, group, points, Partitions);
            Assert.Equal(Enumerable.Repeat((long)Rounds, Partitions), final);

            // Read every aggregate message back as a consumer does.
            var messages = new List<(IReadOnlyList<SourceOffsetRange> Ranges, IReadOnlyList<AggregateRow> Rows)>();
            using (var reader = new KafkaAggregateReader(cluster.BootstrapServers, aggregates))
            {
                var readClock = Stopwatch.StartNew();
                while (messages.Sum(m => m.Rows.Sum(r => r.Count)) < Rounds * Partitions * PointsPerMessage && readClock.Elapsed < s_timeout)
                {
                    if (reader.Read(TimeSpan.FromMilliseconds(500)) is { } message)
                    {
                        using (message)
                        {
                            messages.Add((message.SourceOffsets, message.Rows));
                        }
                    }
                }

                // Anything more is a duplicate.
                while (reader.Read(TimeSpan.FromMilliseconds(500)) is { } extra)
                {
                    using (extra)
                    {
                        messages.Add((extra.SourceOffsets, extra.Rows));
                    }
                }
            }

            Assert.Equal(sink.Delivered, messages.Count);
            List<AggregateRow> rows = [.. messages.SelectMany(m => m.Rows)];
            Assert.Equal(Rounds * Partitions * PointsPerMessage, rows.Sum(r => r.Count));
            Assert.True(rows.Select(r => r.WindowStartUnixMs).Distinct().Count() >= 3, "the rounds span at least three 10 s windows");
            for (int p = 0; p < Partitions; p++)
            {
                // Each offset's points exactly once: the sum of the values (= offsets) of the partition's points.
                double expected = PointsPerMessage * (Rounds * (Rounds - 1) / 2.0);
                Assert.Equal(expected, rows.Where(r => PartitionOf(r) == p).Sum(r => r.Sum));
            }

            List<(int, long)> commits = [.. watcher.Seen.Distinct(), .. final.Select((o, p) => (p, o))];
            Assert.True(commits.Count > Partitions, $"only the final commits were seen: {string.Join(" ", commits)}");
            AssertNoStraddle(messages, commits, points);
        }

    }

    /// <summary>
    /// Promise 2: a sink that hangs for longer than the revoke timeout while points keep coming: cuts are given up and
    /// counted (CutTimeouts), no commit seen while running passes a point the sink had not acknowledged, and once the
    /// sink is back every point is there exactly once, committed to the end, with no message straddling any commit.
    /// </summary>
    [Fact]
    public async Task Cuts_SinkHangsLongerThanRevokeTimeout_CutsGivenUpCommitsNeverPassUnacknowledgedNothingLost()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("probe-hang");
        KafkaPointSource? described = null;
        var sink = new ProbeSink(b => described!.DescribeSourceOffsets(b));

        // A sink queue of one batch: a hung sink blocks the shards (and with them the cuts) almost at once.
        await using MetricsPipeline pipeline = Create(sink, sinkOptions: new SinkOptions { QueueCapacity = 1 });
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, Options(cluster, "probe-hang", "g-hang", TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(20), revokeTimeout: TimeSpan.FromMilliseconds(300)));
        described = source;
        using var releaseSink = new OnExit(sink.Release); // disposed before the source and the pipeline
        source.Start();
        await source.FirstAssignment.WaitAsync(s_timeout);

        string? violation = null;
        void Check(IReadOnlyDictionary<int, long> committed)
        {
            foreach ((int p, long offset) in committed)
            {
                // The commit was made after the acknowledgement: the sink's count, read after, must cover it.
                long acknowledged = sink.AcknowledgedPoints(p);
                if (acknowledged < offset * PointsPerMessage)
                {
                    violation ??= $"partition {p} committed at {offset} with only {acknowledged} of its points acknowledged";
                }
            }
        }

        const int Rounds = 12;
        await using (var watcher = new CommitWatcher(source, Check))
        {
            for (int round = 0; round < Rounds; round++)
            {
                if (round == 4)
                {
                    // The sink hangs for 2 s (over six revoke timeouts) while rounds 4..11 are read.
                    sink.Open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }

                KafkaTestClient.Produce(cluster.BootstrapServers, "probe-hang", Enumerable.Range(0, Partitions).Select(p => (p, Message(p, round, T0 + round))));
                await Task.Delay(150);
                if (round == 3)
                {
                    await Eventually.True(() => source.GetMetrics().CommittedOffsets.Values.Sum() == 4 * Partitions, s_timeout, () => source.GetMetrics().ToString());
                }
            }

            await Eventually.True(() => source.GetMetrics().CutTimeouts > 0, s_timeout, () => source.GetMetrics().ToString());
            long[] whileHung = [.. Enumerable.Range(0, Partitions).Select(p => source.GetMetrics().CommittedOffsets.GetValueOrDefault(p))];
            Assert.All(whileHung, c => Assert.True(c <= 4, $"committed {string.Join(",", whileHung)} while the sink hung with rounds 0..3 acknowledged"));
            sink.Open.SetResult();
            await Eventually.True(() => source.GetMetrics().CommittedOffsets.Values.Sum() == Rounds * Partitions, s_timeout, () => source.GetMetrics().ToString());
            await source.StopAsync();
            await pipeline.StopAsync();

            Assert.Null(violation);
            List<(IReadOnlyList<SourceOffsetRange> Ranges, List<AggregateRow> Rows)> batches = sink.Batches;
            Assert.Equal(Rounds * Partitions * PointsPerMessage, batches.Sum(b => b.Rows.Sum(r => r.Count)));
            Assert.Equal(Enumerable.Repeat((long)Rounds, Partitions), KafkaTestClient.Committed(cluster.BootstrapServers, "g-hang", "probe-hang", Partitions));
            AssertNoStraddle(batches.Select(b => (b.Ranges, (IReadOnlyList<AggregateRow>)b.Rows)), [.. watcher.Seen.Distinct()], "probe-hang");
        }
    }

    /// <summary>
    /// Promise 2: a sink that hangs through the stop: the stop returns within its documented bound (twice the revoke
    /// timeout plus the close timeout), counts the revoke timeout, and commits nothing the sink had not acknowledged; the
    /// points past the commit are re-read by the next owner (nothing lost).
    /// </summary>
    [Fact]
    public async Task StopAsync_SinkHangsThroughTheStop_ReturnsWithinBoundCommitsOnlyAcknowledged()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("probe-stop-hang");
        KafkaPointSource? described = null;
        var sink = new ProbeSink(b => described!.DescribeSourceOffsets(b));
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        KafkaPointSourceOptions options = Options(cluster, "probe-stop-hang", "g-stop-hang", TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(20), revokeTimeout: TimeSpan.FromMilliseconds(500));
        await using var source = new KafkaPointSource(pipeline, options);
        described = source;
        using var releaseSink = new OnExit(sink.Release); // disposed before the source and the pipeline
        source.Start();
        await source.FirstAssignment.WaitAsync(s_timeout);
        KafkaTestClient.Produce(cluster.BootstrapServers, "probe-stop-hang", Enumerable.Range(0, Partitions).Select(p => (p, Message(p, 0, T0))));
        await Eventually.True(() => source.GetMetrics().CommittedOffsets.Values.Sum() == Partitions, s_timeout, () => source.GetMetrics().ToString());

        sink.Open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        KafkaTestClient.Produce(cluster.BootstrapServers, "probe-stop-hang", Enumerable.Range(0, Partitions).Select(p => (p, Message(p, 1, T0 + 1))));
        await Eventually.True(() => source.GetMetrics().Messages == 2 * Partitions, s_timeout, () => source.GetMetrics().ToString());

        var clock = Stopwatch.StartNew();
        await source.StopAsync();
        TimeSpan bound = (2 * options.RevokeTimeout) + options.CloseTimeout;
        Assert.True(clock.Elapsed < bound, $"the stop took {clock.Elapsed} (bound {bound})");
        KafkaSourceMetrics metrics = source.GetMetrics();
        Assert.True(metrics.RevokeTimeouts >= 1, metrics.ToString());
        Assert.Equal(Enumerable.Repeat(1L, Partitions), KafkaTestClient.Committed(cluster.BootstrapServers, "g-stop-hang", "probe-stop-hang", Partitions));

        // The sink comes back: the pipeline's own stop delivers the rest (nothing lost, even before any re-read).
        sink.Open.SetResult();
        await pipeline.StopAsync();
        Assert.Equal(2 * Partitions * PointsPerMessage, sink.Batches.Sum(b => b.Rows.Sum(r => r.Count)));
    }

    /// <summary>
    /// Promise 3: a sink that throws for a while (the pipeline retries): failures counted, no commit seen passes a point
    /// the sink had not acknowledged, then every point exactly once in the sink and every partition committed to its end.
    /// </summary>
    [Fact]
    public async Task Commit_SinkThrowsForAWhile_CommitsNeverPassUnacknowledgedEveryPointOnce()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("probe-throw");
        KafkaPointSource? described = null;
        var sink = new ProbeSink(b => described!.DescribeSourceOffsets(b)) { Failing = true };
        // The sink runner's backoff waits on the pipeline's (fake, standing) clock: no backoff, the sink's own 5 ms pause instead.
        var sinkOptions = new SinkOptions { MaxAttempts = int.MaxValue, InitialBackoff = TimeSpan.Zero, MaxBackoff = TimeSpan.Zero };
        await using MetricsPipeline pipeline = Create(sink, sinkOptions: sinkOptions);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, Options(cluster, "probe-throw", "g-throw", TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(20)));
        described = source;
        using var releaseSink = new OnExit(sink.Release); // disposed before the source and the pipeline
        source.Start();
        await source.FirstAssignment.WaitAsync(s_timeout);

        string? violation = null;
        void Check(IReadOnlyDictionary<int, long> committed)
        {
            foreach ((int p, long offset) in committed)
            {
                long acknowledged = sink.AcknowledgedPoints(p);
                if (acknowledged < offset * PointsPerMessage)
                {
                    violation ??= $"partition {p} committed at {offset} with only {acknowledged} of its points acknowledged";
                }
            }
        }

        const int Rounds = 8;
        await using (var watcher = new CommitWatcher(source, Check))
        {
            for (int round = 0; round < Rounds; round++)
            {
                KafkaTestClient.Produce(cluster.BootstrapServers, "probe-throw", Enumerable.Range(0, Partitions).Select(p => (p, Message(p, round, T0 + round))));
                await Task.Delay(100);
            }

            await Eventually.True(() => Interlocked.Read(ref sink.Failures) > 20, s_timeout, () => $"{sink.Failures} failures");
            Assert.DoesNotContain(source.GetMetrics().CommittedOffsets, c => c.Value > 0);
            sink.Failing = false;
            await Eventually.True(() => source.GetMetrics().CommittedOffsets.Values.Sum() == Rounds * Partitions, s_timeout, () => source.GetMetrics().ToString());
            await source.StopAsync();
            await pipeline.StopAsync();

            Assert.Null(violation);
            Assert.True(pipeline.GetMetrics().Sinks.Single().Errors > 0);
            List<(IReadOnlyList<SourceOffsetRange> Ranges, List<AggregateRow> Rows)> batches = sink.Batches;
            Assert.Equal(Rounds * Partitions * PointsPerMessage, batches.Sum(b => b.Rows.Sum(r => r.Count)));
            Assert.Equal(Enumerable.Repeat((long)Rounds, Partitions), KafkaTestClient.Committed(cluster.BootstrapServers, "g-throw", "probe-throw", Partitions));
            AssertNoStraddle(batches.Select(b => (b.Ranges, (IReadOnlyList<AggregateRow>)b.Rows)), [.. watcher.Seen.Distinct()], "probe-throw");
        }
    }

    /// <summary>
    /// Promise 5: a segment interval of one day: no cut and no commit while running, then the stop cuts once and commits
    /// every partition to its end.
    /// </summary>
    [Fact]
    public async Task StopAsync_SegmentIntervalOneDay_NothingCommittedWhileRunningEverythingAtTheStop()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("probe-day");
        KafkaPointSource? described = null;
        var sink = new ProbeSink(b => described!.DescribeSourceOffsets(b));
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, Options(cluster, "probe-day", "g-day", TimeSpan.FromDays(1), TimeSpan.FromMilliseconds(20)));
        described = source;
        source.Start();
        KafkaTestClient.Produce(cluster.BootstrapServers, "probe-day", Enumerable.Range(0, 3 * Partitions).Select(m => (m % Partitions, Message(m % Partitions, m / Partitions, T0))));
        await Eventually.True(() => source.GetMetrics().Messages == 3 * Partitions, s_timeout, () => source.GetMetrics().ToString());
        await Task.Delay(300); // 15 commit intervals: none may commit without a cut
        Assert.Equal(0, source.GetMetrics().Commits);
        Assert.Equal(0, source.GetMetrics().Cuts);
        Assert.Empty(sink.Batches);

        await source.StopAsync();
        await pipeline.StopAsync();
        Assert.Equal(1, source.GetMetrics().Cuts);
        Assert.Equal(3 * Partitions * PointsPerMessage, sink.Batches.Sum(b => b.Rows.Sum(r => r.Count)));
        Assert.Equal(Enumerable.Repeat(3L, Partitions), KafkaTestClient.Committed(cluster.BootstrapServers, "g-day", "probe-day", Partitions));
    }

    /// <summary>
    /// Promise 6 (and "Revoke and stop ... commits"): a second instance joins after the first has read every message
    /// but before it committed (1-day segments: nothing is committed before a revoke), so the mock refuses the first's
    /// revoke commit and half of the partitions come back to it, where it skips what it had delivered. No point may be
    /// lost, and once A stops gracefully (the group stable: nothing refuses its commit) the partitions it held must be
    /// committed to their end, so that a restart does not read them again.
    /// </summary>
    [Fact]
    public async Task StopAsync_PartitionsBackAfterRefusedRevokeCommit_CommitsEveryPartitionToItsEnd()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("probe-back");
        KafkaPointSource? describedA = null, describedB = null;
        var sinkA = new ProbeSink(b => describedA!.DescribeSourceOffsets(b));
        var sinkB = new ProbeSink(b => describedB!.DescribeSourceOffsets(b));
        await using MetricsPipeline a = Create(sinkA, instance: "a");
        await using MetricsPipeline b = Create(sinkB, instance: "b");
        a.Start();
        b.Start();
        await using var sourceA = new KafkaPointSource(a, Options(cluster, "probe-back", "g-back", TimeSpan.FromDays(1), TimeSpan.FromMilliseconds(20)));
        await using var sourceB = new KafkaPointSource(b, Options(cluster, "probe-back", "g-back", TimeSpan.FromDays(1), TimeSpan.FromMilliseconds(20)));
        describedA = sourceA;
        describedB = sourceB;
        const int PerPartition = 5;
        KafkaTestClient.Produce(cluster.BootstrapServers, "probe-back", Enumerable.Range(0, PerPartition * Partitions).Select(m => (m % Partitions, Message(m % Partitions, m / Partitions, T0))));
        sourceA.Start();
        await Eventually.True(() => sourceA.GetMetrics().Messages == PerPartition * Partitions, s_timeout, () => sourceA.GetMetrics().ToString());

        sourceB.Start();
        await Eventually.True(
            () => sourceB.GetMetrics().AssignedPartitions > 0 && sourceA.GetMetrics().AssignedPartitions > 0
                && sourceA.GetMetrics().Messages + sourceB.GetMetrics().Messages >= 2 * PerPartition * Partitions,
            s_timeout,
            () => sourceA.GetMetrics() + " / " + sourceB.GetMetrics());
        KafkaSourceMetrics afterRebalance = sourceA.GetMetrics();

        // A stops, usually while the group is stable. B's stop can then meet the rebalance of A's leaving, and the mock
        // refuses its commit: the documented residual case, not checked here.
        await sourceA.StopAsync();

        // More than the scenario's one refused commit: the group went through another rebalance (B's join taking
        // another round, or meeting A's stop), whose commits the mock refuses too, the same residual case.
        bool anotherRefusal = sourceA.GetMetrics().CommitFailures > 1;
        await sourceB.StopAsync();
        await a.StopAsync();
        await b.StopAsync();

        // No point lost: each instance's sink holds every point of the partitions it read.
        long aggregated = Enumerable.Range(0, Partitions).Sum(p => Math.Max(sinkA.AcknowledgedPoints(p), sinkB.AcknowledgedPoints(p)));
        Assert.Equal(PerPartition * Partitions * PointsPerMessage, aggregated);

        // The scenario happened: A's revoke commit was refused and it skipped the partitions that came back to it.
        Assert.True(afterRebalance.CommitFailures > 0 && afterRebalance.SkippedMessages > 0, afterRebalance.ToString());

        // A's partitions at the end are those B did not read (B read its own from the start). A stopped gracefully:
        // they are committed to their end, so that a restart does not aggregate them a second time.
        // (Unless another refused rebalance came, above. Before the fix nothing was even tried: no commit, no failure.)
        long[] committed = KafkaTestClient.Committed(cluster.BootstrapServers, "g-back", "probe-back", Partitions);
        int[] ofA = [.. Enumerable.Range(0, Partitions).Where(p => sinkB.AcknowledgedPoints(p) == 0)];
        Assert.NotEmpty(ofA);
        Assert.True(anotherRefusal || ofA.All(p => committed[p] == PerPartition), $"A held {string.Join(",", ofA)}; committed {string.Join(",", committed)} after A's stop; A: {sourceA.GetMetrics()}");
    }
}
