using System.Text.Json;
using System.Text.RegularExpressions;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// The executable's Kafka path on librdkafka's mock cluster: <c>run --kafka-mock</c> consumes what
/// <c>produce</c> writes and publishes window aggregates that <c>tail</c> prints; all three are processes.
/// </summary>
public partial class KafkaCommandsTests
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
    }

    [GeneratedRegex(@"produce --kafka-bootstrap ([^\s)]+)\)")]
    private static partial Regex Bootstrap();

    [GeneratedRegex(@"^(?<key>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  load_request_duration_seconds\{[^}]*\})\s+(?<count>\d+)\s", RegexOptions.Multiline)]
    private static partial Regex TailRow();
}
