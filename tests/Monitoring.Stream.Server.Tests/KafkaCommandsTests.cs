using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Monitoring.Stream.Kafka;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Server.Tests.Support;
using Xunit.Abstractions;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// The executable's Kafka path on librdkafka's mock cluster: <c>run --kafka-mock</c> consumes what
/// <c>produce</c> writes and publishes window aggregates that <c>tail</c> prints; all three are processes.
/// </summary>
public partial class KafkaCommandsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RunKafkaMock_ProduceThenTail_EveryPointIsAggregated()
    {
        await using ServerProcess server = await ServerProcess.StartAsync(["--kafka-mock"], new Dictionary<string, string>
        {
            // Points are stamped when produce makes them and aggregated when the consumer gets to them: on a
            // loaded machine that is seconds later, while the partitions' writers (idle until the first message)
            // let the clock close windows. A lateness of 10 s covers the delay; 1 s made points late in CI.
            ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:02",
            ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:10",
            ["MONITORING_STREAM__Pipeline__SourceIdleTimeout"] = "00:00:10",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        Match bootstrap = Bootstrap().Match(server.Output);
        Assert.True(bootstrap.Success, server.Output);
        string servers = bootstrap.Groups[1].Value;

        await using (ServerProcess produce = ServerProcess.Launch(["produce", "--kafka-bootstrap", servers, "--points", "20000", "--series", "20", "--batch", "500"]))
        {
            int exit = await produce.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(exit == 0, produce.Output);
            Assert.Contains("failed 0, undelivered at exit 0", produce.Output, StringComparison.Ordinal);
        }

        // The engine's statistics over HTTP count every produced point once its windows close.
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        await Poll.UntilAsync<object>(async () =>
        {
            JsonElement answer = await ServiceApi.GetJsonAsync(client, "/api/v1/statistics?metric=load_request_duration_seconds&window=10m");
            JsonElement s = answer.GetProperty("statistics");
            return s.ValueKind == JsonValueKind.Object && s.GetProperty("count").GetInt64() == 20_000 ? s : null;
        }, TimeSpan.FromSeconds(90), "20,000 points in closed windows");

        // tail reads the aggregate topic from its start: the merged counts of the series-windows add up to the points.
        await using (ServerProcess tail = ServerProcess.Launch(["tail", "--kafka-bootstrap", servers, "--metric", "load_request_duration_seconds", "--idle-seconds", "5"]))
        {
            int exit = await tail.WaitForExitAsync(TimeSpan.FromSeconds(90));
            Assert.True(exit == 0, tail.Output);
            var latest = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (Match row in TailRow().Matches(tail.Output))
            {
                latest[row.Groups["key"].Value] = long.Parse(row.Groups["count"].Value, System.Globalization.CultureInfo.InvariantCulture);
            }

            Assert.Equal(20_000, latest.Values.Sum());
        }

        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("stopped (Stopped)", server.Output, StringComparison.Ordinal);

        // The stop's summary of the Kafka source: every produced point read once, none refused, the stop's cut and commit.
        Assert.Matches(@"kafka source: messages \d+, points 20,000 \(refused 0\), dead-lettered 0 \(failed writes 0\); commits [1-9]\d* \(failed 0\), cuts [1-9]", server.Output);
    }

    [Fact]
    public async Task RunKafka_InstanceKilledWithSigkillWhileConsumingThenRestarted_EveryPointAtLeastOnceDuplicatesRemovedExactly()
    {
        // The cluster lives in the test process, so it outlives the instance killed below (run --kafka-mock would die with it).
        using var cluster = new KafkaMockCluster();
        const string pointsTopic = "crash.points", aggregatesTopic = "crash.aggregates", group = "crash-group";
        int partitions = cluster.EnsureTopic(pointsTopic);
        cluster.EnsureTopic(aggregatesTopic);
        Dictionary<string, string> Settings(string instance) => new()
        {
            ["MONITORING_STREAM__Pipeline__Instance"] = instance,
            ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:01",
            ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:02",
            // Long enough to hold the watermark through the restart's group join (docs/kafka.md, "Watermark held"),
            // short enough that the restart's last windows close (and are committed) soon after the load ends.
            ["MONITORING_STREAM__Pipeline__SourceIdleTimeout"] = "00:00:20",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
            ["MONITORING_STREAM__ArrowStoreEnabled"] = "false",
            // A killed member stays in the group until its session expires: the restart's first assignment waits for that.
            ["MONITORING_STREAM__Server__Kafka__ClientSettings__session.timeout.ms"] = "6000",
            // Commit segments of 5 s (default 10 s): the kill below lands about 3 s into the second segment, after windows
            // holding points past the first commit have closed by event time and been delivered.
            ["MONITORING_STREAM__Server__Kafka__SegmentInterval"] = "00:00:05",
        };
        string[] args = ["--kafka-bootstrap", cluster.BootstrapServers, "--points-topic", pointsTopic, "--aggregates-topic", aggregatesTopic, "--group", group];
        using var load = new PacedPointLoad(cluster.BootstrapServers, pointsTopic, partitions, DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeMilliseconds());
        using IConsumer<Ignore, Ignore> offsets = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = group })
            .SetLogHandler(static (_, _) => { }).Build();
        long[] Committed() => [.. offsets.Committed(Enumerable.Range(0, partitions).Select(p => new TopicPartition(pointsTopic, p)), TimeSpan.FromSeconds(10))
            .OrderBy(o => o.Partition.Value).Select(o => Math.Max(o.Offset.Value, 0))];

        // 1. The first instance consumes a paced load (10 rounds of 4 messages a second); once it has committed
        //    something, it is killed with SIGKILL while the load goes on.
        int roundsAtKill;
        await using (ServerProcess first = await ServerProcess.StartAsync(args, Settings("first")))
        {
            var clock = Stopwatch.StartNew();
            while (Committed().Sum() == 0)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"the first instance committed nothing within 90 s ({load.Rounds} rounds produced). Output:\n{first.Output}");
                Assert.False(first.Process.HasExited, first.Output);
                load.ProduceRound();
                await Task.Delay(100);
            }

            // Three more seconds of load: the windows of 1 s close 2 s (the lateness) of event time after their end, so
            // windows holding points read after the commit reach the topic before the next cut commits them.
            for (int i = 0; i < 30; i++)
            {
                load.ProduceRound();
                await Task.Delay(100);
            }

            roundsAtKill = load.Rounds;
            first.Process.Kill(); // SIGKILL on Linux: no handler runs, nothing is flushed or committed
            Assert.Equal(128 + 9, await first.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.DoesNotContain("stopped (", first.Output, StringComparison.Ordinal);
        }

        long[] committedAtKill = Committed();
        output.WriteLine($"killed after {roundsAtKill} rounds; committed then: {string.Join(",", committedAtKill)}");
        Assert.True(committedAtKill.Sum() < (long)roundsAtKill * partitions, $"everything was committed before the kill: {string.Join(",", committedAtKill)} of {roundsAtKill} a partition");

        // 2. The rest of the load, then a restarted instance in the same group: it reads from the committed offsets.
        for (int i = 0; i < 30; i++)
        {
            load.ProduceRound();
        }

        load.Flush(TimeSpan.FromSeconds(30));
        Assert.Empty(load.Errors);
        long[] ends = load.DeliveredEnds();
        Assert.All(ends, e => Assert.Equal(load.Rounds, e)); // one message a partition a round: offset = round
        string restartOutput = string.Empty;
        long restartPoints = ends.Zip(committedAtKill, (end, committed) => (end - committed) * PacedPointLoad.PointsPerMessage).Sum();
        await using (ServerProcess restarted = await ServerProcess.StartAsync(args, Settings("restarted")))
        {
            // Done when the group has committed every partition to its end: every point read, aggregated and acknowledged
            // (the last windows close once the partitions have been idle for the idle timeout).
            var clock = Stopwatch.StartNew();
            while (!Committed().SequenceEqual(ends))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(150), $"the restart did not commit to the ends {string.Join(",", ends)} within 150 s: {string.Join(",", Committed())}. Output:\n{restarted.Output}");
                Assert.False(restarted.Process.HasExited, restarted.Output);
                await Task.Delay(200);
            }

            // A clean stop: nothing left to close or commit.
            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(90)));
            Assert.Contains("stopped (Stopped)", restarted.Output, StringComparison.Ordinal);
            restartOutput = restarted.Output;
        }

        long[] committedAtEnd = Committed();
        Assert.True(ends.SequenceEqual(committedAtEnd), $"committed {string.Join(",", committedAtEnd)} of {string.Join(",", ends)} after the restart's clean stop. Output:\n{restartOutput}");

        // 3. The aggregates topic, read back and summed per series and instance.
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var byInstance = new Dictionary<string, long>(StringComparer.Ordinal);
        var firstCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        var restartedCounts = new Dictionary<string, long>(StringComparer.Ordinal);

        // Deduplication by the source offsets each aggregate message carries (docs/kafka.md): a batch of the killed
        // instance all of whose ranges start at or above its last commit holds only points the restart read again.
        var deduplicated = new Dictionary<string, long>(StringComparer.Ordinal);
        var straddlingBySeries = new Dictionary<string, long>(StringComparer.Ordinal);
        long droppedPoints = 0, straddlingPoints = 0;
        using (var reader = new KafkaAggregateReader(cluster.BootstrapServers, aggregatesTopic))
        {
            var clock = Stopwatch.StartNew();
            Stopwatch? quiet = null; // from the first message on: joining the reader's group takes seconds
            while (quiet is null || quiet.Elapsed < TimeSpan.FromSeconds(5))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the aggregates topic was still being read after 60 s");
                using AggregateMessage? message = reader.Read(TimeSpan.FromMilliseconds(200));
                if (message is null)
                {
                    continue;
                }

                (quiet ??= new Stopwatch()).Restart();
                List<AggregateRow> rows = [.. message.Rows.Where(r => r.Metric == PacedPointLoad.Metric)];
                if (rows.Count == 0)
                {
                    continue;
                }

                List<SourceOffsetRange> ranges = [.. message.SourceOffsets.Where(r => r.Topic == pointsTopic)];
                Assert.NotEmpty(ranges);
                bool first = rows[0].Instance == "first";
                bool duplicate = first && message.IsReadAgainAfter(pointsTopic, committedAtKill.Select((c, p) => (c, p)).ToDictionary(x => x.p, x => x.c));
                bool straddling = first && !duplicate && ranges.Any(r => r.High >= committedAtKill[r.Partition]);
                foreach (AggregateRow row in rows)
                {
                    counts[row.SeriesKey] = counts.GetValueOrDefault(row.SeriesKey) + row.Count;
                    byInstance[row.Instance ?? "?"] = byInstance.GetValueOrDefault(row.Instance ?? "?") + row.Count;
                    Dictionary<string, long> mine = first ? firstCounts : restartedCounts;
                    mine[row.SeriesKey] = mine.GetValueOrDefault(row.SeriesKey) + row.Count;
                    deduplicated[row.SeriesKey] = deduplicated.GetValueOrDefault(row.SeriesKey) + (duplicate ? 0 : row.Count);
                    droppedPoints += duplicate ? row.Count : 0;
                    straddlingPoints += straddling ? row.Count : 0;
                    straddlingBySeries[row.SeriesKey] = straddlingBySeries.GetValueOrDefault(row.SeriesKey) + (straddling ? row.Count : 0);
                }
            }
        }

        // Every point at least once, and no series beyond the load's.
        Dictionary<string, long> expected = load.ExpectedCounts();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), counts.Keys.Order(StringComparer.Ordinal));
        long committedPoints = committedAtKill.Sum() * PacedPointLoad.PointsPerMessage;
        long excess = counts.Values.Sum() - expected.Values.Sum();
        output.WriteLine($"points {expected.Values.Sum():N0}; aggregated {counts.Values.Sum():N0} (first {byInstance.GetValueOrDefault("first"):N0}, restarted {byInstance.GetValueOrDefault("restarted"):N0}); " +
            $"committed by the first {committedPoints:N0}; duplicates {excess:N0}");
        for (int p = 0; p < partitions; p++)
        {
            for (int s = 0; s < PacedPointLoad.SeriesPerPartition; s++)
            {
                string key = PacedPointLoad.SeriesKey(p, s);
                long belowCommit = committedAtKill[p] * PacedPointLoad.PointsPerSeries;
                long afterCommit = (ends[p] - committedAtKill[p]) * PacedPointLoad.PointsPerSeries;
                long firstCount = firstCounts.GetValueOrDefault(key), restartedCount = restartedCounts.GetValueOrDefault(key);
                Assert.True(counts[key] >= expected[key], $"{key}: {counts[key]} aggregated, {expected[key]} produced");

                // The killed instance: every committed point, plus at most the messages of the partition it could have
                // read past its commit before it died (those produced by then).
                Assert.True(firstCount >= belowCommit, $"{key}: the killed instance aggregated {firstCount}, fewer than the {belowCommit} it committed");
                long bound = (roundsAtKill - committedAtKill[p]) * PacedPointLoad.PointsPerSeries;
                Assert.True(firstCount - belowCommit <= bound, $"{key}: {firstCount - belowCommit} duplicates from the killed instance, more than the {bound} uncommitted at the kill");

                // The restart: everything from the committed offset on.
                Assert.True(restartedCount >= afterCommit, $"{key}: the restart aggregated {restartedCount}, fewer than the {afterCommit} after the commit");
            }
        }

        // The duplicates, explained: the killed instance's windows of the uncommitted rest that it had already delivered
        // to the topic (first - committed). The restart reads nothing twice itself: on the mock cluster, if it joined
        // before the killed member's session expired, the second rebalance's revoke commit is refused
        // (REBALANCE_IN_PROGRESS, see docs/kafka.md) and the partitions come back at its last commit, but it skips what
        // every sink had acknowledged before the revoke.
        long restartRereads = byInstance.GetValueOrDefault("restarted") - restartPoints;
        output.WriteLine($"duplicates: {byInstance.GetValueOrDefault("first") - committedPoints:N0} from the killed instance past its commit, {restartRereads:N0} read twice by the restart");
        Assert.Equal(0, restartRereads);
        Assert.Equal(byInstance.GetValueOrDefault("first") - committedPoints, excess);

        // Deduplicating by source offsets is exact (docs/kafka.md, "Segments"): offsets are committed only at cuts, so each
        // batch of the killed instance lies wholly below its last commit (kept) or wholly at or above it (dropped: the
        // restart read and aggregated all of it again). No batch straddles the commit; every series has its exact count.
        long remaining = deduplicated.Values.Sum() - expected.Values.Sum();
        output.WriteLine($"dropped by source offsets: {droppedPoints:N0} points; left: {remaining:N0} duplicates; {straddlingPoints:N0} points in batches straddling the commit");
        Assert.Equal(0, straddlingPoints);
        Assert.All(expected, e => Assert.True(deduplicated[e.Key] == e.Value, $"{e.Key}: {deduplicated[e.Key]} after dropping duplicates by source offsets, {e.Value} produced"));
        Assert.Equal(excess, droppedPoints);
    }

    [GeneratedRegex(@"produce --kafka-bootstrap ([^\s)]+)\)")]
    private static partial Regex Bootstrap();

    [GeneratedRegex(@"^(?<key>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  load_request_duration_seconds\{[^}]*\})\s+(?<count>\d+)\s", RegexOptions.Multiline)]
    private static partial Regex TailRow();
}
