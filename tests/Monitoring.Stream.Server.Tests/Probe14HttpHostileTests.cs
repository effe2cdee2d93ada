using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Monitoring.Stream.Server.Tests.Support;

namespace Monitoring.Stream.Server.Tests;

/// <summary>
/// Probe 14: the HTTP API of docs/http-api.md under hostile query strings (absurd spans, too many or huge filters,
/// broken encodings), extreme values and names at the documented limits and one past them, and requests of every
/// endpoint while the service stops. Promises: "400 names the parameter"; "No answer carries an exception message or a
/// stack trace; an unexpected failure is a bare 500" (so a 500 is a defect); the limits of the ingest table.
/// </summary>
[Collection("Probe14 processes")]
public class Probe14HttpHostileTests
{
    private static readonly Dictionary<string, string> s_settings = new()
    {
        ["MONITORING_STREAM__SystemMetricsEnabled"] = "false",
        ["MONITORING_STREAM__Pipeline__ShardCount"] = "2",
        ["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:01",
        ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:02",
        ["MONITORING_STREAM__Pipeline__SourceIdleTimeout"] = "00:00:01",
    };

    private static string Repeat(char c, int n) => new(c, n);

    /// <summary>What an answer must never be, whatever the request: a 500, or an answer showing an exception.</summary>
    private static string? Defect(string request, HttpResponseMessage response, string body)
    {
        if ((int)response.StatusCode >= 500 && response.StatusCode != HttpStatusCode.ServiceUnavailable)
        {
            return $"{request}: {(int)response.StatusCode} {Cut(body)}";
        }

        if (body.Contains("Exception", StringComparison.Ordinal) || body.Contains("   at ", StringComparison.Ordinal))
        {
            return $"{request}: the answer carries an exception: {Cut(body)}";
        }

        return null;
    }

    private static string Cut(string s) => s.Length > 300 ? s[..300] + "…" : s;

    [Fact]
    public async Task Probe14_HostileQueryStrings_Every400NamesItsParameter_No500_NoHang()
    {
        await using ServerProcess server = await ServerProcess.StartAsync(environment: s_settings);
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string metric = ServiceApi.UniqueMetric("probe14_q");
        using (HttpResponseMessage posted = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [new("k", "v")], [1, 2, 3], ServiceApi.Now), "application/x-msgpack"))
        {
            Assert.Equal(HttpStatusCode.OK, posted.StatusCode);
        }

        string filters32 = string.Concat(Enumerable.Range(0, 32).Select(i => $"&label.k{i}=v"));
        string filters33 = filters32 + "&label.k32=v";
        string group32 = "&groupBy=" + string.Join(',', Enumerable.Range(0, 32).Select(i => $"g{i}"));
        string group33 = group32 + ",g32";
        string group33Repeated = string.Concat(Enumerable.Range(0, 33).Select(i => $"&groupBy=g{i}"));

        // (path and query, the parameter a 400 must name, or null when any 200 or 4xx is fine, or "200" when it must answer)
        (string Path, string? Parameter)[] cases =
        [
            // Documented limits: at most 32 label filters and 32 group-by labels; no step with groupBy; at most 500 steps in the window.
            ($"/api/v1/statistics?metric={metric}{filters32}", "200"),
            ($"/api/v1/statistics?metric={metric}{filters33}", "label"),
            ($"/api/v1/statistics?metric={metric}{group32}", "200"),
            ($"/api/v1/statistics?metric={metric}{group33}", null),            // named wrongly: Probe14_GroupByBeyond32_...
            ($"/api/v1/statistics?metric={metric}{group33Repeated}", null),
            ($"/api/v1/statistics?metric={metric}&groupBy=k&step=10s", "step"),
            ($"/api/v1/statistics?metric={metric}&window=1h&step=7.2s", "200"),   // exactly 500 steps: 500 buckets, or 501 when not aligned
            ($"/api/v1/statistics?metric={metric}&window=1h&step=7s", "step"),    // 514 steps
            ($"/api/v1/statistics?metric={metric}&window=366d", "200"),
            ($"/api/v1/statistics?metric={metric}&window=366d&step=1d", "200"),
            ($"/api/v1/statistics?metric={metric}&window=366d&step=366d", "200"),
            ($"/api/v1/statistics?metric={metric}&window=1h&step=366d", "200"),
            ($"/api/v1/statistics?metric={metric}&window=1h&step=367d", "step"),
            ($"/api/v1/statistics?metric={metric}&window=367d", "window"),
            ($"/api/v1/statistics?metric={metric}&window=-0s", "window"),
            ($"/api/v1/statistics?metric={metric}&window=-366d", "window"),
            ($"/api/v1/statistics?metric={metric}&window=Infinitys", "window"),
            ($"/api/v1/statistics?metric={metric}&window=-Infinityd", "window"),
            ($"/api/v1/statistics?metric={metric}&window=1e3m", null),
            ($"/api/v1/statistics?metric={metric}&window=0.0000001ms", null),   // below a tick: positive as written, zero as a TimeSpan
            ($"/api/v1/statistics?metric={metric}&window=0.00001s", null),
            ($"/api/v1/statistics?metric={metric}&window=1h&step=0.0000001ms", "step"),
            ($"/api/v1/statistics?metric={metric}&window=%20%201h", null),
            ($"/api/v1/statistics?metric={metric}&window=1h%00", null),
            ($"/api/v1/statistics?metric={metric}&window=", null),
            ($"/api/v1/statistics?metric={metric}&window=9999999999999999999999999999d", "window"),
            ($"/api/v1/statistics?metric={metric}&step=", null),
            ($"/api/v1/statistics?metric={metric}&groupBy=", null),
            ($"/api/v1/statistics?metric={metric}&groupBy=,,,", null),
            ($"/api/v1/statistics?metric={metric}&groupBy=__name__", null),
            ($"/api/v1/statistics?metric={metric}&groupBy=1bad", null),
            ($"/api/v1/statistics?metric={metric}&groupBy=k&groupBy=k", null),
            ($"/api/v1/statistics?metric={metric}&label.k=", null),
            ($"/api/v1/statistics?metric={metric}&label.1bad=v", null),
            ($"/api/v1/statistics?metric={metric}&label.k={Repeat('x', 4096)}", "200"),
            ($"/api/v1/statistics?metric={metric}&label.k={Repeat('x', 20_000)}", null),   // past the request-line limit: a 4xx
            ($"/api/v1/statistics?metric={metric}&label.{Repeat('k', 300)}=v", null),
            ($"/api/v1/statistics?metric={Repeat('m', 256)}", "200"),
            ($"/api/v1/statistics?metric={Repeat('m', 5000)}", null),
            ("/api/v1/statistics?metric=not-a-metric-name", null),
            ("/api/v1/statistics?metric=%E2%82%AC", null),
            ("/api/v1/statistics?metric=%ZZ", null),
            ("/api/v1/statistics?metric=%00", null),
            ("/api/v1/statistics?metric=%C3%28", null),   // invalid UTF-8
            ("/api/v1/statistics?metric=unknown_probe14_metric", "200"),
            ($"/api/v1/statistics?metric={metric}&window=1h&window=1h", "window"),
            ($"/api/v1/statistics?metric={metric}&Metric=other", null),
            ("/api/v1/statistics?" + string.Concat(Enumerable.Range(0, 1000).Select(i => $"x{i}=1&")) + $"metric={metric}", null),

            // The dashboard: window as above; the metrics list with odd searches.
            ("/api/v1/dashboard?window=-1h", "window"),
            ("/api/v1/dashboard?window=0s", "window"),
            ("/api/v1/dashboard?window=367d", "window"),
            ("/api/v1/dashboard?window=366d", "200"),
            ("/api/v1/dashboard?window=0.0000001ms", null),
            ("/api/v1/dashboard?window=1h&window=2h", null),
            ($"/api/v1/metrics?search={Repeat('s', 4000)}", "200"),
            ("/api/v1/metrics?search=%00", "200"),
            ("/api/v1/metrics?search=%25", "200"),
            ("/api/v1/metrics?search=.*", "200"),
            ("/api/v1/metrics?search=a&search=b", null),
        ];

        List<string> failures = await CheckAsync(client, cases);

        // The service is still whole after all of that.
        using (HttpResponseMessage health = await client.GetAsync(new Uri("/health/live", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        }

        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Length} hostile queries answered wrongly:\n" + string.Join("\n", failures));
        Assert.Equal(0, exit);
    }

    /// <summary>Sends each GET and returns what was answered wrongly (see the cases' comment).</summary>
    private static async Task<List<string>> CheckAsync(HttpClient client, (string Path, string? Parameter)[] cases)
    {
        var failures = new List<string>();
        foreach ((string path, string? parameter) in cases)
        {
            string shown = Cut(path);
            HttpResponseMessage response;
            try
            {
                response = await client.GetAsync(new Uri(path, UriKind.Relative));
            }
            catch (TaskCanceledException)
            {
                failures.Add($"{shown}: no answer within 30 s");
                continue;
            }

            using (response)
            {
                string body = await response.Content.ReadAsStringAsync();
                string? defect = Defect(shown, response, body);
                if (defect is not null)
                {
                    failures.Add(defect);
                    continue;
                }

                int status = (int)response.StatusCode;
                if (parameter == "200")
                {
                    if (status != 200)
                    {
                        failures.Add($"{shown}: {status} {Cut(body)}, expected 200");
                    }
                }
                else if (parameter is not null)
                {
                    if (status != 400 || !body.Contains($"'{parameter}", StringComparison.Ordinal))
                    {
                        failures.Add($"{shown}: {status} {Cut(body)}, expected 400 naming '{parameter}'");
                    }
                    else if (response.Content.Headers.ContentType?.MediaType != "application/problem+json")
                    {
                        failures.Add($"{shown}: 400 as {response.Content.Headers.ContentType}, not problem details");
                    }
                }
                else if (status != 200 && (status < 400 || status >= 500))
                {
                    failures.Add($"{shown}: {status} {Cut(body)}, expected 200 or a 4xx");
                }
            }
        }

        return failures;
    }

    [Fact]
    public async Task Probe14_StepBuckets_AlignedOneStepEachCoveringTheSpan_AtMost501()
    {
        // docs/http-api.md, `step`: "the window cut into buckets of this size, oldest first ... aligned to multiples of step
        // since the epoch ... The window may hold at most 500 steps; the aligned buckets covering it are at most one more
        // than ⌈window ÷ step⌉ ... at most 501". A window of exactly 500 steps that does not start on a multiple of the
        // step is the edge. (Probe 14 found 501 buckets where the docs then
        // said "At most 500 buckets"; the docs now state the count.)
        await using ServerProcess server = await ServerProcess.StartAsync(environment: s_settings);
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string metric = ServiceApi.UniqueMetric("probe14_steps");
        var bucketFailures = new List<string>();
        // Buckets (docs/http-api.md, step): aligned to multiples of step since the epoch, each step long, oldest first,
        // together covering the span, at most 501.
        foreach ((string window, long stepMs) in new[] { ("10s", 3000L), ("1h", 60_000L), ("366d", 86_400_000L), ("1m", 7L * 1000), ("1h", 7200L), ("500m", 60_000L), ("500s", 1000L) })
        {
            JsonElement answer = await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window={window}&step={stepMs}ms");
            JsonElement[] buckets = [.. answer.GetProperty("series").EnumerateArray()];
            long fromMs = DateTimeOffset.Parse(answer.GetProperty("from").GetString()!, CultureInfo.InvariantCulture).ToUnixTimeMilliseconds();
            long toMs = DateTimeOffset.Parse(answer.GetProperty("to").GetString()!, CultureInfo.InvariantCulture).ToUnixTimeMilliseconds();
            long[] starts = [.. buckets.Select(b => DateTimeOffset.Parse(b.GetProperty("from").GetString()!, CultureInfo.InvariantCulture).ToUnixTimeMilliseconds())];
            long[] ends = [.. buckets.Select(b => DateTimeOffset.Parse(b.GetProperty("to").GetString()!, CultureInfo.InvariantCulture).ToUnixTimeMilliseconds())];
            string what = $"window={window}&step={stepMs}ms: {buckets.Length} buckets from {starts.FirstOrDefault()} to {ends.LastOrDefault()}, span [{fromMs}, {toMs})";
            // The aligned buckets that cover [from, to): from the step boundary at or before from to the one at or after to.
            long expected = ((toMs + stepMs - 1) / stepMs) - (fromMs / stepMs);
            if (buckets.Length == 0 || buckets.Length > 501 || buckets.Length != expected)
            {
                bucketFailures.Add($"{what}: not 1 to 501 buckets, or not the {expected} that cover the span aligned");
                continue;
            }

            for (int i = 0; i < buckets.Length; i++)
            {
                if (starts[i] % stepMs != 0 || ends[i] - starts[i] != stepMs || (i > 0 && starts[i] != ends[i - 1]))
                {
                    bucketFailures.Add($"{what}: bucket {i} [{starts[i]}, {ends[i]}) not aligned, not one step long or not right after the previous");
                    break;
                }
            }

            if (starts[0] > fromMs || ends[^1] < toMs)
            {
                bucketFailures.Add($"{what}: the buckets do not cover the span");
            }
        }

        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(bucketFailures.Count == 0, string.Join("\n", bucketFailures));
        Assert.Equal(0, exit);
    }

    [Fact]
    public async Task Probe14_GroupByBeyond32Labels_400NamesGroupBy()
    {
        // docs/http-api.md: "Query strings: at most 32 label filters and 32 group-by labels"; "400 names the parameter".
        // Here the only parameter over its limit is groupBy (no label filter at all).
        await using ServerProcess server = await ServerProcess.StartAsync(environment: s_settings);
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string group33 = "&groupBy=" + string.Join(',', Enumerable.Range(0, 33).Select(i => $"g{i}"));
        string group33Repeated = string.Concat(Enumerable.Range(0, 33).Select(i => $"&groupBy=g{i}"));
        List<string> failures = await CheckAsync(client,
        [
            ($"/api/v1/statistics?metric=probe14_group{group33}", "groupBy"),
            ($"/api/v1/statistics?metric=probe14_group{group33Repeated}", "groupBy"),
        ]);
        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Equal(0, exit);
    }

    [Fact]
    public async Task Probe14_ExtremeValuesAndNamesAtTheLimits_AcceptedOrRefusedAsDocumented_StatisticsExact()
    {
        // README: values beyond ±1e100 are refused (ValueOutOfRange) "so moments stay finite"; ±1e100 itself, subnormals and
        // -0 are numbers within it. docs/http-api.md: a string longer than Server:MaxStringBytes (4,096 UTF-8 bytes) or
        // more than 32 labels is 400 malformed (nothing written); docs/configuration.md: names up to MaxNameLength (256),
        // label values up to MaxLabelValueLength (4,096); beyond, the engine refuses the point (200, counted by reason).
        await using ServerProcess server = await ServerProcess.StartAsync(environment: s_settings);
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
        string id = Guid.NewGuid().ToString("N")[..8];
        string extreme = $"probe14_extreme_{id}";
        string tiny = $"probe14_tiny_{id}";
        string longName = ("probe14_long_" + id + "_").PadRight(256, 'n');
        string tooLongName = longName + "n";
        string labelName256 = ("l" + id).PadRight(256, 'l');

        async Task<(int Status, JsonElement Answer)> PostJsonAsync(string json)
        {
            using HttpResponseMessage response = await ServiceApi.PostAsync(client, Encoding.UTF8.GetBytes(json), "application/json");
            string text = await response.Content.ReadAsStringAsync();
            Assert.True((int)response.StatusCode is 200 or 400, $"{(int)response.StatusCode} {Cut(text)}");
            using JsonDocument document = JsonDocument.Parse(text);
            return ((int)response.StatusCode, document.RootElement.Clone());
        }

        string Point(string metric, string value, string labels = "{}") => $$"""{"metric":"{{metric}}","labels":{{labels}},"value":{{value}}}""";
        string Batch(params string[] points) => $$"""{"points":[{{string.Join(',', points)}}]}""";

        // Values: the edges accepted, one step past refused by reason.
        string[] good = ["1e100", "-1e100", "1E+100", "-0.0", "0", "5e-324", "-5e-324", "2.2250738585072014E-308", "4.9406564584124654E-324", "1e-320"];
        string[] outOfRange = ["1.0000000000000002e100", "-1.0000000000000002e100", "1e308", "-1.7976931348623157e308"];
        (int status, JsonElement answer) = await PostJsonAsync(Batch([.. good.Select(v => Point(extreme, v)), .. outOfRange.Select(v => Point(extreme, v))]));
        Assert.True(status == 200, answer.ToString());
        Assert.True(answer.GetProperty("accepted").GetInt64() == good.Length, $"accepted: {answer}");
        Assert.True(answer.GetProperty("rejectedByReason").TryGetProperty("value_out_of_range", out JsonElement oor) && oor.GetInt64() == outOfRange.Length, $"refused: {answer}");

        (status, answer) = await PostJsonAsync(Batch(Point(tiny, "5e-324"), Point(tiny, "-5e-324"), Point(tiny, "-0.0"), Point(tiny, "2.2250738585072014E-308")));
        Assert.True(status == 200 && answer.GetProperty("accepted").GetInt64() == 4, answer.ToString());

        // A metric whose three series carry 90 label names between them (30 each): /api/v1/metrics lists "the label names
        // seen on its series (at most 64 per metric)".
        string wide = $"probe14_wide_{id}";
        (status, answer) = await PostJsonAsync(Batch([.. Enumerable.Range(0, 3).Select(sIndex =>
            Point(wide, "1", "{" + string.Join(',', Enumerable.Range(0, 30).Select(i => $"\"l{sIndex * 30 + i:D2}\":\"v\"")) + "}"))]));
        Assert.True(status == 200 && answer.GetProperty("accepted").GetInt64() == 3, $"the wide metric: {status} {Cut(answer.ToString())}");

        // Names and label values at the limits and one past.
        string value4096 = Repeat('v', 4096);
        string value2048Two = Repeat('é', 2048);  // 4,096 UTF-8 bytes
        (status, answer) = await PostJsonAsync(Batch(
            Point(longName, "1", $$"""{"{{labelName256}}":"{{value4096}}"}"""),
            Point(longName, "2", $$"""{"k":"{{value2048Two}}"}"""),
            Point(longName, "3", "{" + string.Join(',', Enumerable.Range(0, 32).Select(i => $"\"k{i}\":\"v\"")) + "}")));
        Assert.True(status == 200 && answer.GetProperty("accepted").GetInt64() == 3, $"three points at the limits: {status} {Cut(answer.ToString())}");

        (status, answer) = await PostJsonAsync(Batch(Point(tooLongName, "1")));
        Assert.True(status == 200 && answer.GetProperty("rejected").GetInt64() == 1 && answer.GetProperty("accepted").GetInt64() == 0, $"a 257-character metric name: {status} {Cut(answer.ToString())}");
        (status, answer) = await PostJsonAsync(Batch(Point(longName, "1", $$"""{"{{labelName256}}l":"v"}""")));
        Assert.True(status == 200 && answer.GetProperty("rejected").GetInt64() == 1 && answer.GetProperty("accepted").GetInt64() == 0, $"a 257-character label name: {status} {Cut(answer.ToString())}");

        foreach ((string what, string bad) in new[]
        {
            ("a 4,097-byte label value", Point(longName, "1", $$"""{"k":"{{Repeat('v', 4097)}}"}""")),
            ("a 4,098-byte label value of 2,049 two-byte characters", Point(longName, "1", $$"""{"k":"{{Repeat('é', 2049)}}"}""")),
            ("33 labels", Point(longName, "1", "{" + string.Join(',', Enumerable.Range(0, 33).Select(i => $"\"k{i}\":\"v\"")) + "}")),
            ("a 4,097-byte metric name", Point(Repeat('m', 4097), "1")),
        })
        {
            // A good point beside the bad one: the batch is refused whole, the good point is not written either.
            (status, answer) = await PostJsonAsync(Batch(Point(longName, "99"), bad));
            Assert.True(status == 400 && answer.GetProperty("reason").GetString() == "malformed", $"{what}: {status} {Cut(answer.ToString())}");
        }

        // The statistics of what was accepted, once closed: count, min and max exact (README), sums finite.
        async Task<JsonElement> ClosedAsync(string metric, string query, long count)
        {
            string text = await Poll.UntilAsync<string>(
                async () =>
                {
                    JsonElement a = await ServiceApi.GetJsonAsync(client, $"/api/v1/statistics?metric={metric}&window=10m{query}");
                    JsonElement s = a.GetProperty("statistics");
                    return s.ValueKind != JsonValueKind.Null && s.GetProperty("count").GetInt64() >= count ? s.GetRawText() : null;
                },
                TimeSpan.FromSeconds(60),
                $"{count} points of {Cut(metric)}");
            using JsonDocument document = JsonDocument.Parse(text);
            JsonElement closed = document.RootElement.Clone();
            Assert.True(closed.GetProperty("count").GetInt64() == count, $"{Cut(metric)}: {closed}");
            return closed;
        }

        JsonElement e = await ClosedAsync(extreme, "", good.Length);
        Assert.True(e.GetProperty("min").GetDouble() == -1e100 && e.GetProperty("max").GetDouble() == 1e100, $"extreme: {e}");
        foreach (string field in new[] { "sum", "mean", "variance", "stdDev", "sampleVariance", "p50", "p99" })
        {
            Assert.True(e.GetProperty(field).ValueKind == JsonValueKind.Number && double.IsFinite(e.GetProperty(field).GetDouble()), $"extreme: {field} is not a finite number: {e}");
        }

        Assert.True(e.GetProperty("sum").GetDouble() == 1e100, $"extreme: the sum of 1e100, -1e100, 1E+100 and tiny values: {e}");

        JsonElement t = await ClosedAsync(tiny, "", 4);
        await ClosedAsync(wide, "", 3);
        JsonElement catalog = await Poll.UntilAsync<string>(
            async () =>
            {
                JsonElement c = await ServiceApi.GetJsonAsync(client, $"/api/v1/metrics?search=PROBE14_WIDE_{id.ToUpperInvariant()}");
                return c.GetProperty("metrics").GetArrayLength() > 0 ? c.GetRawText() : null;
            },
            TimeSpan.FromSeconds(30),
            "the wide metric in /api/v1/metrics (search is case-insensitive)") is string raw ? JsonDocument.Parse(raw).RootElement.Clone() : default;
        JsonElement entry = Assert.Single(catalog.GetProperty("metrics").EnumerateArray());
        Assert.Equal(wide, entry.GetProperty("name").GetString());
        string[] names = [.. entry.GetProperty("labels").EnumerateArray().Select(n => n.GetString()!)];
        Assert.True(names.Length is > 0 and <= 64 && names.Distinct().Count() == names.Length && names.All(n => n.StartsWith('l')),
            $"the wide metric's label names: {names.Length} ({string.Join(",", names)})");
        Assert.True(t.GetProperty("min").GetDouble() == -double.Epsilon && t.GetProperty("max").GetDouble() == 2.2250738585072014E-308, $"tiny: {t}");

        JsonElement l = await ClosedAsync(longName, $"&label.{labelName256}={value4096}", 1);
        Assert.True(l.GetProperty("sum").GetDouble() == 1, $"the 256-character metric's series with a 4,096-character value: {l}");
        JsonElement all = await ClosedAsync(longName, "", 3); // the three at the limits; the 99s were refused whole
        Assert.True(all.GetProperty("sum").GetDouble() == 6, $"the 256-character metric: {all}");

        server.Terminate();
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task Probe14_EveryEndpointWhileTheServiceStops_NeverA500_NoHang_ExitZero()
    {
        // docs/http-api.md: 503 `stopping` while the service stops; /health/ready 503 while stopping; no 500. README: one
        // SIGTERM stops it cleanly. Six clients call every endpoint in a loop through the stop.
        await using ServerProcess server = await ServerProcess.StartAsync(environment: s_settings);
        string metric = ServiceApi.UniqueMetric("probe14_stopping");
        var statuses = new ConcurrentDictionary<string, int>();
        var defects = new ConcurrentQueue<string>();
        long answers = 0;
        string[] paths =
        [
            $"/api/v1/statistics?metric={metric}&window=1h",
            $"/api/v1/statistics?metric={metric}&window=1h&step=1m",
            $"/api/v1/statistics?metric={metric}&window=1h&groupBy=c",
            "/api/v1/metrics",
            "/api/v1/dashboard?window=1h",
            "/metrics",
            "/health",
            "/health/ready",
            "/openapi/v1.json",
        ];

        async Task Client(int id)
        {
            using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };
            for (int i = 0; ; i++)
            {
                bool post = (i + id) % 3 == 0;
                string what = post ? "POST /api/v1/points" : paths[(i + id) % paths.Length];
                HttpResponseMessage response;
                try
                {
                    response = post
                        ? await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [new("c", id.ToString(CultureInfo.InvariantCulture))], Enumerable.Repeat(1.0, 200), ServiceApi.Now), "application/x-msgpack")
                        : await client.GetAsync(new Uri(what, UriKind.Relative));
                }
                catch (TaskCanceledException)
                {
                    defects.Enqueue($"{what}: no answer within 30 s");
                    return;
                }
                catch (HttpRequestException e)
                {
                    if (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused } || server.Process.HasExited)
                    {
                        return;
                    }

                    continue; // reset while closing
                }

                using (response)
                {
                    Interlocked.Increment(ref answers);
                    string body = await response.Content.ReadAsStringAsync();
                    statuses.AddOrUpdate($"{what.Split('?')[0]} {(int)response.StatusCode}", 1, (_, n) => n + 1);
                    string? defect = Defect(what, response, body);
                    if (defect is not null)
                    {
                        defects.Enqueue(defect);
                    }
                    else if ((int)response.StatusCode is not (200 or 503 or 429))
                    {
                        defects.Enqueue($"{what}: {(int)response.StatusCode} {Cut(body)}");
                    }
                }
            }
        }

        Task[] clients = [.. Enumerable.Range(0, 6).Select(i => Task.Run(() => Client(i)))];
        var clock = Stopwatch.StartNew();
        while (Interlocked.Read(ref answers) < 60)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "60 answers did not come within 60 s");
            await Task.Delay(50);
        }

        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Task all = Task.WhenAll(clients);
        Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(45))) == all, "the clients did not end within 45 s of the exit");
        string seen = string.Join(", ", statuses.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} x{p.Value}"));
        Assert.True(defects.IsEmpty, $"{defects.Count} wrong answers while stopping: {string.Join(" | ", defects.Take(10))}\nseen: {seen}");
        Assert.True(exit == 0, $"exit code {exit}. Output:\n{server.Output}");
        Assert.Contains("stopped (Stopped)", server.Output, StringComparison.Ordinal);
    }
    [Fact]
    public async Task Probe14_QueriesWhileTheStoreRotatesAndRetentionDeletesFiles_NeverA500_CountsNeverAboveWhatWasSent()
    {
        // docs/operations.md: files are published every MaxFileAge and deleted past Retention; sdk.md: windows that left
        // memory are read from the files. Here memory keeps 4 s, files last 5 s, a file is published every second: every
        // query reaches files that retention is deleting. docs/http-api.md: no 500, no exception in an answer.
        var settings = new Dictionary<string, string>(s_settings)
        {
            ["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:01",
            ["MONITORING_STREAM__ArrowStore__MaxFileAge"] = "00:00:01",
            ["MONITORING_STREAM__ArrowStore__Retention"] = "00:00:05",
            ["MONITORING_STREAM__RecentWindows__Retention"] = "00:00:04",
        };
        await using ServerProcess server = await ServerProcess.StartAsync(environment: settings);
        string metric = ServiceApi.UniqueMetric("probe14_churn");
        long sent = 0;
        var defects = new ConcurrentQueue<string>();
        long maxCount = 0;
        long answers = 0;
        using var enough = new CancellationTokenSource(TimeSpan.FromSeconds(12));
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(30) };

        async Task SenderAsync()
        {
            while (!enough.IsCancellationRequested)
            {
                using HttpResponseMessage response = await ServiceApi.PostAsync(client, ServiceApi.MessagePack(metric, [new("s", "1")], Enumerable.Repeat(1.0, 200), ServiceApi.Now), "application/x-msgpack");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    Interlocked.Add(ref sent, 200);
                }

                await Task.Delay(20);
            }
        }

        async Task QueriesAsync(int id)
        {
            string[] paths =
            [
                $"/api/v1/statistics?metric={metric}&window=1m",
                $"/api/v1/statistics?metric={metric}&window=1m&step=1s",
                $"/api/v1/statistics?metric={metric}&window=1m&groupBy=s",
                $"/api/v1/statistics?metric={metric}&window=7d&label.s=1",
                "/api/v1/metrics",
                "/api/v1/dashboard?window=5m",
            ];
            for (int i = 0; !enough.IsCancellationRequested; i++)
            {
                string path = paths[(i + id) % paths.Length];
                HttpResponseMessage response;
                try
                {
                    response = await client.GetAsync(new Uri(path, UriKind.Relative));
                }
                catch (TaskCanceledException)
                {
                    defects.Enqueue($"{path}: no answer within 30 s");
                    return;
                }

                using (response)
                {
                    Interlocked.Increment(ref answers);
                    string body = await response.Content.ReadAsStringAsync();
                    string? defect = Defect(path, response, body);
                    if (defect is not null || response.StatusCode != HttpStatusCode.OK)
                    {
                        defects.Enqueue(defect ?? $"{path}: {(int)response.StatusCode} {Cut(body)}");
                        continue;
                    }

                    if (path.EndsWith("window=1m", StringComparison.Ordinal))
                    {
                        using JsonDocument answer = JsonDocument.Parse(body);
                        JsonElement st = answer.RootElement.GetProperty("statistics");
                        long count = st.ValueKind == JsonValueKind.Null ? 0 : st.GetProperty("count").GetInt64();
                        long sentNow = Interlocked.Read(ref sent) + 200; // one request may be written before its answer
                        if (count > sentNow)
                        {
                            defects.Enqueue($"{path}: count {count}, more than the {sentNow} points sent");
                        }

                        long seen;
                        while ((seen = Interlocked.Read(ref maxCount)) < count && Interlocked.CompareExchange(ref maxCount, count, seen) != seen)
                        {
                        }
                    }
                }
            }
        }

        Task[] all = [Task.Run(SenderAsync), .. Enumerable.Range(0, 3).Select(i => Task.Run(() => QueriesAsync(i)))];
        Task whole = Task.WhenAll(all);
        Assert.True(await Task.WhenAny(whole, Task.Delay(TimeSpan.FromSeconds(90))) == whole, "the clients did not end within 90 s");
        await whole;
        string text = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        string files = $"published files now {Directory.GetFiles(Path.Combine(server.DataDirectory, "windows"), "*.arrow").Length}, write errors {MetricsText.Value(text, "monitoring_stream_store_write_errors_total")}";
        server.Terminate();
        int exit = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(defects.IsEmpty, $"{defects.Count} wrong answers of {Interlocked.Read(ref answers)}: {string.Join(" | ", defects.Take(8))}; {files}");
        Assert.True(Interlocked.Read(ref maxCount) > 0, $"no query ever counted a point ({answers} answers, {sent} sent); {files}");
        Assert.Equal(0, exit);
    }
}
