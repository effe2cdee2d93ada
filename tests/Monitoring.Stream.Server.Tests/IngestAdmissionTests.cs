using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// Overload on the running executable: a sink that stalls the shards makes ingest answer 503 with Retry-After, counted,
/// without a request ever waiting on a full queue; a full waiting room answers 429 at once.
/// </summary>
public class IngestAdmissionTests
{
    [Fact]
    public async Task PostPoints_SinkStallsTheShards_Returns503WithRetryAfterCountedAndNothingWaits()
    {
        // The Kafka sink's brokers accept connections and never answer: its first window waits for a delivery that
        // does not come (30 s), its queue (1 window) fills, and the one shard blocks on the next window it closes.
        // A request that waited on a full queue would outlive the client's timeout.
        // The shard queue holds 16 batches of 16 points; ingest counts it saturated at half of that.
        using var blackHole = new BlackHoleListener();
        await using ServerProcess server = await ServerProcess.StartAsync(["--kafka-bootstrap", $"127.0.0.1:{blackHole.Port}"], new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Server__Kafka__PointsTopic"] = string.Empty,
            ["MONITORING_STREAM__Server__IngestConcurrency"] = "2",
            ["MONITORING_STREAM__Server__SaturationQueueFill"] = "0.5",
            ["MONITORING_STREAM__Pipeline__ShardCount"] = "1",
            ["MONITORING_STREAM__Pipeline__BatchSize"] = "16",
            ["MONITORING_STREAM__Pipeline__ShardQueueBatches"] = "16",
            ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:01",
            ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:00",
            ["MONITORING_STREAM__Sinks__QueueCapacity"] = "1",
            ["MONITORING_STREAM__Sinks__AttemptTimeout"] = "00:10:00",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(20) };
        string metric = ServiceApi.UniqueMetric("stalled");
        long sent = 0, accepted = 0, refusedPoints = 0, saturated = 0;

        // Requests of 10 points (one batch each) stamped now, a few a second, until the service says the engine is
        // saturated. Each second closes a window: the first goes to the Kafka sink and waits there, the second fills
        // its queue, the third blocks the shard; then the requests (and the service's own request metrics) fill the
        // shard's queue, and at half of it the service refuses instead of writing.
        static byte[] Filler(string metric) => ServiceApi.MessagePackAt(metric, [.. Enumerable.Range(0, 10).Select(i => (ServiceApi.Now, (double)i))]);
        HttpResponseMessage? refused = null;
        bool stalled = false;
        var stalling = Stopwatch.StartNew();
        while (!stalled && stalling.Elapsed < TimeSpan.FromSeconds(30))
        {
            HttpResponseMessage response = await ServiceApi.PostAsync(client, Filler(metric), "application/x-msgpack");
            sent += 10;
            if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
            {
                refusedPoints += 10;
                saturated++;
                if (refused is null)
                {
                    refused = response;
                }
                else
                {
                    response.Dispose();
                }

                // Stalled for good, not a passing queue: the sink holds its windows and the shard's queue is at the limit.
                string now = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
                stalled = Sample(now, "monitoring_stream_sink_queue_depth{sink=\"kafka:metrics.aggregates\"}") >= 1 &&
                    Sample(now, "monitoring_stream_shard_queue_depth{shard=\"0\"}") >= 8;
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                JsonElement answer = await ServiceApi.JsonAsync(response);
                Assert.Equal(10, answer.GetProperty("accepted").GetInt64());
                accepted += 10;
                response.Dispose();
            }

            await Task.Delay(100);
        }

        Assert.True(refused is not null && stalled, $"no 503 (or no stall: {stalled}) within 30 s of requests into a stalled engine. Output:\n" + server.Output);
        using (refused)
        {
            Assert.Equal("1", refused.Headers.RetryAfter?.ToString());
            JsonElement problem = await ServiceApi.JsonAsync(refused);
            Assert.Equal("saturated", problem.GetProperty("reason").GetString());
        }

        // Now a burst from many clients at once: every one is refused at once, none waits on the engine.
        var clock = Stopwatch.StartNew();
        HttpResponseMessage[] burst = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => ServiceApi.PostAsync(client, Filler(metric), "application/x-msgpack")));
        TimeSpan burstTime = clock.Elapsed;
        foreach (HttpResponseMessage response in burst)
        {
            using (response)
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Equal("1", response.Headers.RetryAfter?.ToString());
            }
        }

        sent += 400;
        refusedPoints += 400;
        saturated += 40;
        Assert.True(burstTime < TimeSpan.FromSeconds(15), $"40 refusals took {burstTime.TotalSeconds:F1} s");

        // Counted: every 503, every accepted point, and the engine saw exactly the accepted ones from this source.
        string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(saturated, Sample(text, "monitoring_stream_http_ingest_refused_total{reason=\"saturated\"}"));
        Assert.Equal(accepted, Sample(text, "monitoring_stream_http_points_accepted_total"));
        Assert.Equal(accepted, Sample(text, "monitoring_stream_source_points_offered_total{source=\"http\"}"));
        Assert.Equal(sent, accepted + refusedPoints);
        Assert.Equal(0, Sample(text, "monitoring_stream_http_ingest_in_flight"));
        Assert.Equal(0, Sample(text, "monitoring_stream_http_ingest_waiting"));
        Assert.Equal(0, Sample(text, "monitoring_stream_http_ingest_buffer_bytes"));
        Assert.InRange(Sample(text, "monitoring_stream_http_ingest_queue_fill"), 0.5, 1.0);
        // The engine is still stalled (the refusals were not for nothing): its Kafka sink has delivered nothing.
        Assert.Equal(0, Sample(text, "monitoring_stream_sink_batches_written_total{sink=\"kafka:metrics.aggregates\"}"));
        Assert.InRange(Sample(text, "monitoring_stream_shard_queue_depth{shard=\"0\"}"), 8, 16);
    }

    [Fact]
    public async Task PostPoints_WaitingRoomFull_Returns429AtOnce()
    {
        // One slot, one place in the waiting room, a minute's wait allowed: a slow body holds the slot, a second
        // request waits, and a third is refused at once rather than queued.
        await using ServerProcess server = await ServerProcess.StartAsync(environment: new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Server__IngestConcurrency"] = "1",
            ["MONITORING_STREAM__Server__IngestQueueLimit"] = "1",
            ["MONITORING_STREAM__Server__IngestQueueTimeout"] = "00:01:00",
            ["MONITORING_STREAM__Server__RequestBodyGracePeriod"] = "00:01:00",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(90) };
        using var slow = await ServiceApi.RawAsync(server.Address,
            "POST /api/v1/points HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"points\":[");
        await Poll.UntilAsync(async () => Sample(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_http_ingest_in_flight") == 1 ? "held" : null,
            TimeSpan.FromSeconds(20), "the slow body holding the slot");

        using var waiterCancel = new CancellationTokenSource();
        var waiterContent = new ByteArrayContent(ServiceApi.MessagePack(ServiceApi.UniqueMetric("waiting"), [], [1], ServiceApi.Now));
        waiterContent.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/x-msgpack");
        Task<HttpResponseMessage> waiter = client.PostAsync(new Uri("/api/v1/points", UriKind.Relative), waiterContent, waiterCancel.Token);
        await Poll.UntilAsync(async () => Sample(await client.GetStringAsync(new Uri("/metrics", UriKind.Relative)), "monitoring_stream_http_ingest_waiting") == 1 ? "waiting" : null,
            TimeSpan.FromSeconds(20), "the second request waiting for the slot");

        var clock = Stopwatch.StartNew();
        using HttpResponseMessage third = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(ServiceApi.UniqueMetric("third"), [], [1], ServiceApi.Now), "application/x-msgpack");
        TimeSpan took = clock.Elapsed;
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("1", third.Headers.RetryAfter?.ToString());
        Assert.True(took < TimeSpan.FromSeconds(10), $"the refusal took {took.TotalSeconds:F1} s (the wait allowed is 60 s)");
        Assert.False(waiter.IsCompleted, "the second request should still wait for the slot");

        string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(1, Sample(text, "monitoring_stream_http_ingest_refused_total{reason=\"busy\"}"));
        Assert.Equal(1, Sample(text, "monitoring_stream_http_ingest_waiting"));

        await waiterCancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter);
    }

    private static double Sample(string exposition, string series)
    {
        string prefix = series + " ";
        string? line = exposition.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        Assert.True(line is not null, $"no sample {series} in /metrics");
        return double.Parse(line[prefix.Length..], CultureInfo.InvariantCulture);
    }

    /// <summary>A TCP listener on 127.0.0.1 that accepts every connection and never answers: brokers that hang.</summary>
    private sealed class BlackHoleListener : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly List<Socket> _accepted = [];
        private readonly CancellationTokenSource _stop = new();

        public BlackHoleListener()
        {
            _listener.Start();
            _ = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    Socket socket = await _listener.AcceptSocketAsync(_stop.Token);
                    lock (_accepted)
                    {
                        _accepted.Add(socket);
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // Stopped.
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            lock (_accepted)
            {
                foreach (Socket socket in _accepted)
                {
                    socket.Dispose();
                }
            }

            _stop.Dispose();
        }
    }
}
