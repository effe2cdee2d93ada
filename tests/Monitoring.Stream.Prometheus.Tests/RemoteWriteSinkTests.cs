using Monitoring.Stream.Prometheus.Tests.Support;

namespace Monitoring.Stream.Prometheus.Tests;

/// <summary>The status matrix of the remote-write spec against a local stub: each answer handled as stated, counters exact.</summary>
public sealed class RemoteWriteSinkTests
{
    // 20 series of which 16 latencies and 4 counters: 11 samples each per window (count, sum, 4 quantiles, 5 gauges).
    private const int Series = 20;
    private const int SamplesPerWindow = Series * 11;
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    private static RemoteWriteSinkOptions Options(Uri endpoint) => new()
    {
        Endpoint = endpoint,
        MaxConcurrentRequests = 1,
        MinBackoff = TimeSpan.FromMilliseconds(10),
        MaxBackoff = TimeSpan.FromMilliseconds(50),
        Timeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Two windows through a one-shard pipeline: one request per window.</summary>
    private static Task<RowCollectingSink> RunTwoWindowsAsync(RemoteWriteSink sink) =>
        PipelineDriver.RunAsync(sink, Series, windows: 2, pointsPerWindow: 3, PipelineDriver.WindowStartBeforeNow(5), shards: 1);

    [Fact]
    public async Task WriteAsync_204_SendsEverySampleWithTheRequiredHeaders()
    {
        await using var stub = new RemoteWriteStub(_ => StubResponse.NoContent);
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.BearerToken = "secret-token";
        options.Headers["X-Scope-OrgID"] = "tenant-7";
        await using var sink = new RemoteWriteSink(options);

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(2, sink.RequestsSent);
        Assert.Equal(0, sink.SamplesDropped);
        Assert.Equal(0, sink.SamplesRetried);
        Assert.Equal(0, sink.QueueDepth);
        Assert.Equal(RemoteWriteSinkState.Ok, sink.State);
        Assert.Equal(2, stub.Attempts);
        foreach (StubRequest request in stub.Requests)
        {
            Assert.Equal("snappy", request.Headers["Content-Encoding"]);
            Assert.Equal("application/x-protobuf", request.Headers["Content-Type"]);
            Assert.Equal("0.1.0", request.Headers["X-Prometheus-Remote-Write-Version"]);
            Assert.Equal("Bearer secret-token", request.Headers["Authorization"]);
            Assert.Equal("tenant-7", request.Headers["X-Scope-OrgID"]);
        }

        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
    }

    [Fact]
    public async Task WriteAsync_400_DropsCountsAndDoesNotRetry()
    {
        await using var stub = new RemoteWriteStub(r => r.Attempt == 1 ? new StubResponse(400, Body: "out of bounds") : StubResponse.NoContent);
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));

        await RunTwoWindowsAsync(sink);

        Assert.Equal(2, stub.Attempts);
        Assert.Equal(SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.Rejected));
        Assert.Equal(1, sink.RequestsDroppedFor(RemoteWriteDropReason.Rejected));
        Assert.Equal(SamplesPerWindow, sink.SamplesDropped);
        Assert.Equal(SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.RequestsRetried);
        Assert.Contains("HTTP 400", sink.LastError, StringComparison.Ordinal);
        Assert.Contains("out of bounds", sink.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task State_AfterEveryRequestRejected_IsDropping()
    {
        await using var stub = new RemoteWriteStub(_ => new StubResponse(400));
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));

        await RunTwoWindowsAsync(sink);

        Assert.Equal(RemoteWriteSinkState.Dropping, sink.State);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.Rejected));
        Assert.Equal(0, sink.SamplesSent);
    }

    [Fact]
    public async Task WriteAsync_413_SplitsIntoWholeSeriesUntilAccepted()
    {
        // The receiver takes at most 60 samples per request: 220 -> 2 x 110 -> 4 x 55, so 3 splits per window.
        await using var stub = new RemoteWriteStub(r => r.Samples!.Count > 60 ? new StubResponse(413) : StubResponse.NoContent);
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.Equal(14, stub.Attempts);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.SamplesDropped);
        Assert.Equal(6, sink.RequestsSplit);
        Assert.Equal(8, sink.RequestsSent);
        Assert.Equal(0, sink.RequestsRetried);
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
        Assert.All(stub.Requests.Where(r => r.Status == 204), r => Assert.True(r.Samples!.Count <= 60));
    }

    [Fact]
    public async Task WriteAsync_413ForEverySize_DropsAsPayloadTooLargeOncePerSeries()
    {
        await using var stub = new RemoteWriteStub(_ => new StubResponse(413));
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));

        await RunTwoWindowsAsync(sink);

        Assert.Equal(2 * SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.PayloadTooLarge));
        Assert.Equal(2 * SamplesPerWindow, sink.RequestsDroppedFor(RemoteWriteDropReason.PayloadTooLarge));
        Assert.Equal(0, sink.SamplesSent);
        Assert.Equal(0, sink.RequestsRetried);
        Assert.Equal(RemoteWriteSinkState.Dropping, sink.State);
    }

    [Fact]
    public async Task WriteAsync_429WithoutRetryOnRateLimit_DropsAsRateLimited()
    {
        await using var stub = new RemoteWriteStub(r => r.Attempt == 1 ? new StubResponse(429, new Dictionary<string, string> { ["Retry-After"] = "1" }) : StubResponse.NoContent);
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));

        await RunTwoWindowsAsync(sink);

        Assert.Equal(2, stub.Attempts);
        Assert.Equal(SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.RateLimited));
        Assert.Equal(SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.RequestsRetried);
    }

    [Fact]
    public async Task WriteAsync_429WithRetryOnRateLimit_RetriesAfterRetryAfter()
    {
        await using var stub = new RemoteWriteStub(r => r.Attempt == 1 ? new StubResponse(429, new Dictionary<string, string> { ["Retry-After"] = "1" }) : StubResponse.NoContent);
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.RetryOnRateLimit = true;
        await using var sink = new RemoteWriteSink(options);

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.Equal(3, stub.Attempts);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.SamplesDropped);
        Assert.Equal(1, sink.RequestsRetried);
        Assert.Equal(SamplesPerWindow, sink.SamplesRetried);
        // The backoff alone is at most 50 ms: a gap of a second is the server's Retry-After.
        TimeSpan gap = stub.Requests[1].ReceivedUtc - stub.Requests[0].ReceivedUtc;
        Assert.True(gap >= TimeSpan.FromMilliseconds(950), $"retried after {gap.TotalMilliseconds} ms");
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
    }

    [Fact]
    public async Task WriteAsync_503ForAWhile_RetriesUntilAcceptedInOrder()
    {
        RemoteWriteSink? observed = null;
        RemoteWriteSinkState stateDuringRetries = RemoteWriteSinkState.Ok;
        await using var stub = new RemoteWriteStub(r =>
        {
            if (r.Attempt == 3)
            {
                stateDuringRetries = observed!.State;
            }

            return r.Attempt <= 3 ? new StubResponse(503, Body: "overloaded") : StubResponse.NoContent;
        });
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));
        observed = sink;

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.Equal(RemoteWriteSinkState.Retrying, stateDuringRetries);
        Assert.Equal(5, stub.Attempts);
        Assert.Equal(3, sink.RequestsRetried);
        Assert.Equal(3 * SamplesPerWindow, sink.SamplesRetried);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.SamplesDropped);
        Assert.Equal(RemoteWriteSinkState.Ok, sink.State);
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
    }

    [Fact]
    public async Task WriteAsync_503WithMaxRetries_DropsAsRetriesExhausted()
    {
        await using var stub = new RemoteWriteStub(_ => new StubResponse(503));
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.MaxRetries = 2;
        await using var sink = new RemoteWriteSink(options);

        await RunTwoWindowsAsync(sink);

        Assert.Equal(6, stub.Attempts);
        Assert.Equal(4, sink.RequestsRetried);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.RetriesExhausted));
        Assert.Equal(0, sink.SamplesSent);
    }

    [Fact]
    public async Task WriteAsync_ServerNeverAnswers_TimesOutAndRetries()
    {
        await using var stub = new RemoteWriteStub(r => r.Attempt == 1 ? StubResponse.NeverAnswer : StubResponse.NoContent);
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.Timeout = TimeSpan.FromMilliseconds(500);
        await using var sink = new RemoteWriteSink(options);

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.Equal(3, stub.Attempts);
        Assert.Equal(1, sink.RequestsRetried);
        Assert.Equal(SamplesPerWindow, sink.SamplesRetried);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.SamplesDropped);
        Assert.Contains("timeout", sink.LastError, StringComparison.Ordinal);
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
    }

    [Fact]
    public async Task WriteAsync_ServerClosesMidBody_RetriesOnANewConnection()
    {
        await using var stub = new RemoteWriteStub(_ => StubResponse.NoContent, closeMidBodyOnAttempt: a => a == 1);
        await using var sink = new RemoteWriteSink(Options(stub.Endpoint));

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.Equal(3, stub.Attempts);
        Assert.Equal(1, sink.RequestsRetried);
        Assert.Equal(SamplesPerWindow, sink.SamplesRetried);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.SamplesDropped);
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
    }

    [Fact]
    public async Task WriteAsync_QueueAtItsBound_DropsTheOldestAndKeepsOrder()
    {
        // The first request hangs until released; meanwhile windows 2..6 arrive at a queue of 2.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var stub = new RemoteWriteStub(r =>
        {
            if (r.Attempt == 1)
            {
                release.Task.Wait(s_wait);
            }

            return StubResponse.NoContent;
        });
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.QueueCapacity = 2;
        options.Timeout = TimeSpan.FromSeconds(60);
        await using var sink = new RemoteWriteSink(options);
        RemoteWriteSinkState stateWhileFull = RemoteWriteSinkState.Ok;

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, Series, windows: 6, pointsPerWindow: 2, PipelineDriver.WindowStartBeforeNow(10), shards: 1,
            afterWindowClosed: async w =>
            {
                await PipelineDriver.WaitUntilAsync(() => sink.SamplesEncoded >= (w + 1) * SamplesPerWindow, s_wait, () => $"window {w} encoded");
                if (w == 0)
                {
                    await PipelineDriver.WaitUntilAsync(() => stub.Attempts == 1, s_wait, () => "first request at the stub");
                }

                if (w == 4)
                {
                    // Windows 1..4 came while the first was in flight: two were dropped. Release before the stop's last window.
                    stateWhileFull = sink.State;
                    Assert.Equal(2 * SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.QueueFull));
                    Assert.Equal(2, sink.QueueDepth);
                    Assert.Equal(2 * SamplesPerWindow, sink.QueuedSamples);
                    release.SetResult();
                    await PipelineDriver.WaitUntilAsync(() => sink.SamplesSent == 3 * SamplesPerWindow, s_wait, () => $"sent {sink.SamplesSent}");
                }
            });

        Assert.Equal(RemoteWriteSinkState.Dropping, stateWhileFull);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.QueueFull));
        Assert.Equal(4 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.QueueDepth);
        long[] windowEnds = [.. stub.Requests.Select(r => r.Samples![0].TimestampMs)];
        long first = windowEnds[0];
        Assert.Equal([first, first + (3 * PipelineDriver.WindowMs), first + (4 * PipelineDriver.WindowMs), first + (5 * PipelineDriver.WindowMs)], windowEnds);
        Assert.Equal(6, engine.Rows.Select(r => r.WindowEndMs).Distinct().Count());
    }

    [Fact]
    public async Task WriteAsync_HttpsSignedByTheGivenCa_SendsWithBasicAuthentication()
    {
        using var certificates = new TestCertificates();
        await using var stub = new RemoteWriteStub(_ => StubResponse.NoContent, certificate: certificates.Server);
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.CaCertificateFile = certificates.CaFile;
        options.BasicAuthUsername = "writer";
        options.BasicAuthPassword = "p@ss:word";
        await using var sink = new RemoteWriteSink(options);

        RowCollectingSink engine = await RunTwoWindowsAsync(sink);

        Assert.StartsWith("https://", stub.Endpoint.ToString(), StringComparison.Ordinal);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
        Assert.Equal(0, sink.RequestsRetried);
        Assert.All(stub.Requests, r => Assert.Equal("Basic " + Convert.ToBase64String("writer:p@ss:word"u8.ToArray()), r.Headers["Authorization"]));
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
    }

    [Fact]
    public async Task WriteAsync_HttpsNotTrusted_FailsEveryAttemptAndSendsNothing()
    {
        using var certificates = new TestCertificates();
        await using var stub = new RemoteWriteStub(_ => StubResponse.NoContent, certificate: certificates.Server);
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.MaxRetries = 1;
        await using var sink = new RemoteWriteSink(options);

        await RunTwoWindowsAsync(sink);

        Assert.Equal(0, sink.SamplesSent);
        Assert.Empty(stub.Requests);
        Assert.Equal(2, sink.RequestsRetried);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesDroppedFor(RemoteWriteDropReason.RetriesExhausted));
        Assert.Contains("SSL", sink.LastError, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WriteAsync_AcknowledgeOnDelivery_CompletesOnlyOnceTheReceiverAnswered(bool onDelivery)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var stub = new RemoteWriteStub(r =>
        {
            if (r.Attempt == 1)
            {
                release.Task.Wait(s_wait);
            }

            return StubResponse.NoContent;
        });
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.AcknowledgeOnDelivery = onDelivery;
        options.Timeout = TimeSpan.FromSeconds(60);
        var sink = new RemoteWriteSink(options);
        var forward = new ForwardingSink(sink);
        int acknowledgedWhileHeld = -1;

        await PipelineDriver.RunAsync(forward, Series, windows: 2, pointsPerWindow: 2, PipelineDriver.WindowStartBeforeNow(6), shards: 1,
            afterWindowClosed: async w =>
            {
                if (w == 0)
                {
                    // The receiver holds the first window's request: acknowledged only if the sink acknowledges on queueing.
                    await PipelineDriver.WaitUntilAsync(() => stub.Attempts == 1 && stub.Requests[0].Samples is not null, s_wait, () => "first request read");
                    if (!onDelivery)
                    {
                        await PipelineDriver.WaitUntilAsync(() => forward.Completed == 1, s_wait, () => "acknowledged on queueing");
                    }

                    acknowledgedWhileHeld = forward.Completed;
                    release.SetResult();
                    await PipelineDriver.WaitUntilAsync(() => forward.Completed == 1, s_wait, () => "acknowledged after the answer");
                }
            });

        Assert.Equal(onDelivery ? 0 : 1, acknowledgedWhileHeld);
        Assert.Equal(2, forward.Completed);
        Assert.Equal(2 * SamplesPerWindow, sink.SamplesSent);
    }

    [Fact]
    public async Task WriteAsync_SeveralLanes_HaveRequestsInFlightAtOnceAndKeepEachSeriesInOrder()
    {
        int inFlight = 0, maxInFlight = 0;
        await using var stub = new RemoteWriteStub(_ =>
        {
            int now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref maxInFlight, now);
            // Hold each request until another is in flight beside it (or 5 s pass, and the assertion below fails).
            SpinWait.SpinUntil(() => Volatile.Read(ref maxInFlight) >= 2, TimeSpan.FromSeconds(5));
            Interlocked.Decrement(ref inFlight);
            return StubResponse.NoContent;
        });
        RemoteWriteSinkOptions options = Options(stub.Endpoint);
        options.MaxConcurrentRequests = 4;
        await using var sink = new RemoteWriteSink(options);

        RowCollectingSink engine = await PipelineDriver.RunAsync(sink, 200, windows: 3, pointsPerWindow: 2, PipelineDriver.WindowStartBeforeNow(6), shards: 1);

        Assert.True(maxInFlight >= 2, $"at most {maxInFlight} request in flight");
        Assert.Equal(3 * 200 * 11, sink.SamplesSent);
        AssertSamplesEqual(ExpectedSeries.From(engine.Rows), stub.Accepted);
        // Received in order per series: each series' timestamps ascend in the order the stub got them.
        Assert.All(stub.Accepted.GroupBy(x => x.SeriesKey), g => Assert.Equal(g.Select(x => x.TimestampMs).Order(), g.Select(x => x.TimestampMs)));

        static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
            {
            }
        }
    }

    [Fact]
    public void Constructor_InvalidOptions_Throws()
    {
        Assert.Throws<ArgumentException>(() => new RemoteWriteSink(new RemoteWriteSinkOptions()));
        Assert.Throws<ArgumentException>(() => new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = new Uri("ftp://x/") }));
        Assert.Throws<ArgumentException>(() => new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = new Uri("http://x/"), BearerToken = "t", BasicAuthUsername = "u" }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = new Uri("http://x/"), QueueCapacity = 0 }));
        Assert.Throws<FileNotFoundException>(() => new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = new Uri("http://x/"), CaCertificateFile = "/nonexistent/ca.pem" }));
    }

    /// <summary>Every expected series holds exactly the expected samples, bit for bit, and nothing else arrived.</summary>
    internal static void AssertSamplesEqual(Dictionary<string, List<(long TimestampMs, double Value)>> expected, List<DecodedSample> received) =>
        AssertSeriesEqual(expected, received.GroupBy(s => ExpectedSeries.Key(s.Labels))
            .ToDictionary(g => g.Key, g => g.Select(s => (s.TimestampMs, s.Value)).ToList(), StringComparer.Ordinal));

    /// <summary>
    /// Both hold the same series with the same timestamps in the same order, and the same values: bit for bit when
    /// <paramref name="relativeTolerance"/> is 0, else within it (VictoriaMetrics keeps about 12 significant digits).
    /// </summary>
    internal static void AssertSeriesEqual(
        Dictionary<string, List<(long TimestampMs, double Value)>> expected, Dictionary<string, List<(long TimestampMs, double Value)>> actual, double relativeTolerance = 0)
    {
        Assert.Equal(expected.Count, actual.Count);
        foreach ((string key, List<(long TimestampMs, double Value)> samples) in expected)
        {
            Assert.True(actual.TryGetValue(key, out List<(long TimestampMs, double Value)>? got), "missing series " + key);
            if (relativeTolerance == 0)
            {
                Assert.Equal(samples, got);
                continue;
            }

            Assert.Equal(samples.Select(s => s.TimestampMs), got.Select(s => s.TimestampMs));
            for (int i = 0; i < samples.Count; i++)
            {
                double e = samples[i].Value, a = got[i].Value;
                Assert.True(Math.Abs(a - e) <= relativeTolerance * Math.Abs(e), $"{key} at {samples[i].TimestampMs}: expected {e:R}, stored {a:R}");
            }
        }
    }
}
