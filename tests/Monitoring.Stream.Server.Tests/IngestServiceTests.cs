using System.Diagnostics;
using System.IO.Compression;
using System.Net;
using System.Text;
using System.Text.Json;
using Monitoring.Stream.Model;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>POST /api/v1/points on the running executable: both body formats, exact statistics, and every way a body is refused.</summary>
[Collection(SharedServerGroup.Name)]
public class IngestServiceTests(SharedServer server)
{
    private static readonly TimeSpan s_windowWait = TimeSpan.FromSeconds(40);

    [Fact]
    public async Task PostPoints_MessagePackAndJson_StatisticsAreExact()
    {
        string metric = ServiceApi.UniqueMetric("exact");
        long now = ServiceApi.Now;
        double[] packed = [.. Enumerable.Range(1, 100).Select(i => (double)i)];
        using (HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, ServiceApi.MessagePack(metric, [new("format", "msgpack"), new("route", "/a")], packed, now), "application/x-msgpack"))
        {
            JsonElement answer = await ServiceApi.JsonAsync(response);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(100, answer.GetProperty("accepted").GetInt32());
            Assert.Equal(0, answer.GetProperty("rejected").GetInt32());
        }

        string json = JsonSerializer.Serialize(new
        {
            points = new[] { 0.25, 0.5, 4.0 }.Select(v => new { metric, labels = new Dictionary<string, string> { ["format"] = "json", ["route"] = "/b" }, value = v, timestamp = now }),
        });
        using (HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, Encoding.UTF8.GetBytes(json), "application/json"))
        {
            JsonElement answer = await ServiceApi.JsonAsync(response);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(3, answer.GetProperty("accepted").GetInt32());
        }

        JsonElement msgpack = await StatisticsAsync($"metric={metric}&window=10m&label.format=msgpack", 100);
        Assert.Equal(5050, msgpack.GetProperty("sum").GetDouble());
        Assert.Equal(1, msgpack.GetProperty("min").GetDouble());
        Assert.Equal(100, msgpack.GetProperty("max").GetDouble());
        Assert.Equal(50.5, msgpack.GetProperty("mean").GetDouble(), 12);
        Assert.Equal(833.25, msgpack.GetProperty("variance").GetDouble(), 9); // population variance of 1..100
        Assert.Equal(1, msgpack.GetProperty("series").GetInt32());

        JsonElement fromJson = await StatisticsAsync($"metric={metric}&window=10m&label.format=json", 3);
        Assert.Equal(4.75, fromJson.GetProperty("sum").GetDouble());
        Assert.Equal(0.25, fromJson.GetProperty("min").GetDouble());
        Assert.Equal(4.0, fromJson.GetProperty("max").GetDouble());

        // Grouped by route: one group per series; unfiltered: both merged.
        JsonElement grouped = await ServiceApi.GetJsonAsync(server.Client, $"/api/v1/statistics?metric={metric}&window=10m&groupBy=route");
        var groups = grouped.GetProperty("groups").EnumerateArray().ToDictionary(g => g.GetProperty("labels").GetProperty("route").GetString()!, g => g.GetProperty("statistics").GetProperty("count").GetInt64());
        Assert.Equal(new Dictionary<string, long> { ["/a"] = 100, ["/b"] = 3 }, groups);
        JsonElement all = await ServiceApi.GetJsonAsync(server.Client, $"/api/v1/statistics?metric={metric}&window=10m");
        Assert.Equal(103, all.GetProperty("statistics").GetProperty("count").GetInt64());

        // query asks the service and prints a table.
        await using (ServerProcess query = ServerProcess.Launch(["query", "--url", server.Address.ToString(), "--api-token", SharedServer.Token, "--metric", metric, "--window", "10m", "--group-by", "format"]))
        {
            Assert.True(await query.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, query.Output);
            Assert.Matches(@"format=msgpack\s+100\s+50\.5\s", query.Output);
            Assert.Matches(@"format=json\s+3\s+1\.58333\s", query.Output);
        }

        // The metric list knows the metric and its label names.
        JsonElement list = await ServiceApi.GetJsonAsync(server.Client, $"/api/v1/metrics?search={metric}");
        JsonElement entry = Assert.Single(list.GetProperty("metrics").EnumerateArray());
        Assert.Equal(metric, entry.GetProperty("name").GetString());
        Assert.Equal(["format", "route"], entry.GetProperty("labels").EnumerateArray().Select(l => l.GetString()!).ToArray());
    }

    [Fact]
    public async Task Statistics_WithStep_BucketsAlignedToTheStepPartitionTheWindowsExactly()
    {
        // Two bursts a window apart (windows are 2 s): with step = the window size, each lands in its own bucket.
        string metric = ServiceApi.UniqueMetric("buckets");
        long first = ServiceApi.Now;
        long second = first + 2_000;
        async Task PostAsync(long timestamp, double[] values)
        {
            string json = JsonSerializer.Serialize(new { points = values.Select(v => new { metric, labels = new Dictionary<string, string> { ["route"] = "/a" }, value = v, timestamp }) });
            using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, Encoding.UTF8.GetBytes(json), "application/json");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await PostAsync(first, [1, 2, 3]);
        await Task.Delay(TimeSpan.FromMilliseconds(2_100));
        await PostAsync(second, [10, 20]);
        await StatisticsAsync($"metric={metric}&window=2m", 5);

        JsonElement answer = await ServiceApi.GetJsonAsync(server.Client, $"/api/v1/statistics?metric={metric}&window=2m&step=2s");
        JsonElement[] buckets = [.. answer.GetProperty("series").EnumerateArray()];
        Assert.InRange(buckets.Length, 60, 61);
        long previousEnd = long.MinValue;
        foreach (JsonElement b in buckets)
        {
            long from = b.GetProperty("from").GetDateTimeOffset().ToUnixTimeMilliseconds();
            long to = b.GetProperty("to").GetDateTimeOffset().ToUnixTimeMilliseconds();
            Assert.Equal(0, from % 2_000);
            Assert.Equal(2_000, to - from);
            Assert.True(previousEnd == long.MinValue || previousEnd == from, "buckets are contiguous, oldest first");
            previousEnd = to;
        }

        var filled = buckets.Where(b => b.GetProperty("statistics").ValueKind == JsonValueKind.Object)
            .Select(b => (From: b.GetProperty("from").GetDateTimeOffset().ToUnixTimeMilliseconds(), Stats: b.GetProperty("statistics"))).ToList();
        Assert.Equal(2, filled.Count);
        Assert.Equal(first - (first % 2_000), filled[0].From);
        Assert.Equal(3, filled[0].Stats.GetProperty("count").GetInt64());
        Assert.Equal(6, filled[0].Stats.GetProperty("sum").GetDouble());
        Assert.Equal(second - (second % 2_000), filled[1].From);
        Assert.Equal(2, filled[1].Stats.GetProperty("count").GetInt64());
        Assert.Equal(30, filled[1].Stats.GetProperty("sum").GetDouble());

        // Too many buckets, or step with groupBy: a 400 naming the parameter.
        using HttpResponseMessage tooMany = await server.Client.GetAsync(new Uri($"/api/v1/statistics?metric={metric}&window=1h&step=1s", UriKind.Relative));
        Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
        Assert.Contains("step", await tooMany.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostPoints_BadValues_AreRejectedWithReasons()
    {
        string metric = ServiceApi.UniqueMetric("bad_values");
        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, ServiceApi.MessagePack(metric, [], [1.0, double.NaN, double.PositiveInfinity, 2.0], ServiceApi.Now), "application/x-msgpack");
        JsonElement answer = await ServiceApi.JsonAsync(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, answer.GetProperty("accepted").GetInt32());
        Assert.Equal(2, answer.GetProperty("rejected").GetInt32());
        JsonElement reasons = answer.GetProperty("rejectedByReason");
        Assert.Equal(2, reasons.EnumerateObject().Sum(r => r.Value.GetInt32()));
        Assert.Equal(2, reasons.EnumerateObject().Count());

        string json = JsonSerializer.Serialize(new { points = new[] { new { metric = "9starts_with_a_digit", value = 1.0 } } });
        using HttpResponseMessage bad = await ServiceApi.PostAsync(server.Client, Encoding.UTF8.GetBytes(json), "application/json");
        JsonElement badAnswer = await ServiceApi.JsonAsync(bad);
        Assert.Equal(HttpStatusCode.OK, bad.StatusCode);
        Assert.Equal(0, badAnswer.GetProperty("accepted").GetInt32());
        Assert.Equal(1, badAnswer.GetProperty("rejectedByReason").GetProperty(RejectReason.InvalidMetricName.ToMetricLabel()).GetInt32());
    }

    [Theory]
    [InlineData("application/x-msgpack", new byte[] { 0x95, 0x01, 0x00 }, "Truncated")]
    [InlineData("application/x-msgpack", new byte[] { 0x95, 0x02, 0x00, 0x90, 0x90, 0x90 }, "UnsupportedVersion")]
    [InlineData("application/json", new byte[] { (byte)'{', (byte)'"', (byte)'p' }, "not valid JSON")]
    [InlineData("application/json", new byte[] { (byte)'[', (byte)']' }, "with a \"points\" array")]
    public async Task PostPoints_MalformedBody_Returns400WithReason(string contentType, byte[] body, string reason)
    {
        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, body, contentType);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using (JsonDocument problem = JsonDocument.Parse(text))
        {
            Assert.Contains(reason, problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }

        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.DoesNotContain(" at Monitoring.", text, StringComparison.Ordinal); // no stack trace
    }

    [Fact]
    public async Task PostPoints_UnsupportedContentType_Returns415()
    {
        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, [1, 2, 3], "text/plain");
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }

    [Fact]
    public async Task PostPoints_DeclaredLengthOverLimit_Returns413BeforeTheBodyIsSent()
    {
        // Headers only: the body (50 MB) is never sent, so an answer proves the server did not wait for it.
        using var tcp = await ServiceApi.RawAsync(server.Address,
            $"POST /api/v1/points HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {SharedServer.Token}\r\nContent-Type: application/x-msgpack\r\nContent-Length: 50000000\r\n\r\n");
        string? status = await ServiceApi.ReadStatusLineAsync(tcp, TimeSpan.FromSeconds(10));
        Assert.NotNull(status);
        Assert.StartsWith("HTTP/1.1 413", status, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostPoints_ChunkedBodyOverLimit_Returns413()
    {
        // No Content-Length: the server counts while it reads and stops at the limit.
        var content = new StreamContent(new MemoryStream(new byte[SharedServer.MaxBodyBytes * 2]));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/x-msgpack");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/points") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using HttpResponseMessage response = await server.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task PostPoints_GzipBomb_Returns413AndIsCounted()
    {
        byte[] bomb = Gzip(new byte[64 << 20]); // 64 MiB of zeros in about 64 KB
        Assert.True(bomb.Length < SharedServer.MaxBodyBytes);
        long before = await RefusedAsync("decompressed_too_large");

        using HttpResponseMessage response = await ServiceApi.PostAsync(server.Client, bomb, "application/x-msgpack", "gzip");
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("decompresses to more than", text, StringComparison.Ordinal);
        Assert.Equal(before + 1, await RefusedAsync("decompressed_too_large"));

        // A sane gzip body is decoded as usual; a body that is not gzip at all is a 400.
        using HttpResponseMessage good = await ServiceApi.PostAsync(server.Client, Gzip(ServiceApi.MessagePack(ServiceApi.UniqueMetric("gzip"), [], [1, 2, 3], ServiceApi.Now)), "application/x-msgpack", "gzip");
        Assert.Equal(HttpStatusCode.OK, good.StatusCode);
        Assert.Equal(3, (await ServiceApi.JsonAsync(good)).GetProperty("accepted").GetInt32());
        using HttpResponseMessage notGzip = await ServiceApi.PostAsync(server.Client, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], "application/x-msgpack", "gzip");
        Assert.Equal(HttpStatusCode.BadRequest, notGzip.StatusCode);
    }

    [Fact]
    public async Task PostPoints_SlowClientThatNeverFinishesItsBody_DoesNotBlockOthersAndIsCutOff()
    {
        using var slow = await ServiceApi.RawAsync(server.Address,
            $"POST /api/v1/points HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {SharedServer.Token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"points\":[");

        // Meanwhile others are served at once.
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 3; i++)
        {
            using HttpResponseMessage other = await ServiceApi.PostAsync(server.Client, ServiceApi.MessagePack(ServiceApi.UniqueMetric("beside_slow"), [], [1], ServiceApi.Now), "application/x-msgpack");
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"other requests took {clock.Elapsed.TotalSeconds:F1} s beside a slow client");

        // The slow one is cut off by the minimum body data rate (2 s grace here), not left open.
        string? left = await ServiceApi.ReadUntilClosedAsync(slow, TimeSpan.FromSeconds(30));
        Assert.NotNull(left);
        Assert.True(left.Length == 0 || left.StartsWith("HTTP/1.1 408", StringComparison.Ordinal), left);
    }

    [Fact]
    public async Task PostPoints_AllIngestSlotsBusy_Returns429WithRetryAfterAndIsCounted()
    {
        // One slot, waited for up to 1 s: a client that holds the slot with an unfinished body (cut off after 4 s)
        // makes the others wait, then answers them 429.
        await using ServerProcess own = await ServerProcess.StartAsync(environment: new Dictionary<string, string>
        {
            ["MONITORING_STREAM__Server__IngestConcurrency"] = "1",
            ["MONITORING_STREAM__Server__IngestQueueTimeout"] = "00:00:01",
            ["MONITORING_STREAM__Server__RequestBodyGracePeriod"] = "00:00:04",
            ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        });
        using var client = new HttpClient { BaseAddress = own.Address, Timeout = TimeSpan.FromSeconds(30) };
        using var slow = await ServiceApi.RawAsync(own.Address,
            "POST /api/v1/points HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"points\":[");
        HttpResponseMessage? busy = null;
        var clock = Stopwatch.StartNew();
        while (busy is null && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            HttpResponseMessage response = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(ServiceApi.UniqueMetric("busy"), [], [1], ServiceApi.Now), "application/x-msgpack");
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                busy = response;
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode); // sent before the slow one took the slot
                response.Dispose();
                await Task.Delay(50);
            }
        }

        Assert.NotNull(busy);
        using (busy)
        {
            Assert.Equal("1", busy.Headers.RetryAfter?.ToString());
        }

        string metrics = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Contains("monitoring_stream_http_ingest_refused_total{reason=\"busy\"} ", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("monitoring_stream_http_ingest_refused_total{reason=\"busy\"} 0\n", metrics, StringComparison.Ordinal);

        // Once the slow body is cut off (408, not a 429 of its own), the slot is free again.
        string? cut = await ServiceApi.ReadUntilClosedAsync(slow, TimeSpan.FromSeconds(30));
        Assert.NotNull(cut);
        Assert.True(cut.Length == 0 || cut.StartsWith("HTTP/1.1 408", StringComparison.Ordinal), cut);
        using HttpResponseMessage after = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(ServiceApi.UniqueMetric("after_busy"), [], [1], ServiceApi.Now), "application/x-msgpack");
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Api_WithoutOrWithWrongToken_Returns401_HealthStaysOpen()
    {
        using HttpResponseMessage anonymous = await ServiceApi.PostAsync(server.Anonymous, ServiceApi.MessagePack("x", [], [1], ServiceApi.Now), "application/x-msgpack");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Contains("Bearer", anonymous.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        using HttpResponseMessage query = await server.Anonymous.GetAsync(new Uri("/api/v1/statistics?metric=x", UriKind.Relative));
        Assert.Equal(HttpStatusCode.Unauthorized, query.StatusCode);
        using HttpResponseMessage metrics = await server.Anonymous.GetAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.Unauthorized, metrics.StatusCode);

        using var wrong = new HttpRequestMessage(HttpMethod.Get, "/api/v1/metrics");
        wrong.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", SharedServer.Token + "x");
        using HttpResponseMessage wrongAnswer = await server.Anonymous.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.Unauthorized, wrongAnswer.StatusCode);

        using HttpResponseMessage health = await server.Anonymous.GetAsync(new Uri("/health/live", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using HttpResponseMessage authorized = await server.Client.GetAsync(new Uri("/api/v1/metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, authorized.StatusCode);
    }

    private async Task<JsonElement> StatisticsAsync(string query, long expectedCount)
    {
        // Windows close a few seconds after their end (2 s windows, 3 s lateness): wait for the answer, bounded.
        JsonElement? found = null;
        await Poll.UntilAsync<object>(async () =>
        {
            JsonElement answer = await ServiceApi.GetJsonAsync(server.Client, "/api/v1/statistics?" + query);
            JsonElement s = answer.GetProperty("statistics");
            if (s.ValueKind == JsonValueKind.Object && s.GetProperty("count").GetInt64() >= expectedCount)
            {
                found = s;
                return s;
            }

            return null;
        }, s_windowWait, $"statistics for {query}");
        Assert.Equal(expectedCount, found!.Value.GetProperty("count").GetInt64());
        return found.Value;
    }

    private async Task<long> RefusedAsync(string reason)
    {
        string text = await server.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        string prefix = $"monitoring_stream_http_ingest_refused_total{{reason=\"{reason}\"}} ";
        string line = text.Split('\n').Single(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return long.Parse(line[prefix.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(data);
        }

        return output.ToArray();
    }
}
