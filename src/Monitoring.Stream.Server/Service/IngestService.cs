using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Compression;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Hosting;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// <c>POST /api/v1/points</c>: reads a bounded (optionally gzip) body, decodes MessagePack (docs/wire-format.md) or
/// JSON, writes the points through one of a bounded number of lanes, and answers accepted and rejected counts.
/// Refuses whole requests (counted by reason) when the body is too large, malformed, or the engine is saturated.
/// </summary>
/// <remarks>
/// Overload never queues without bound: at most <see cref="ServerSettings.IngestConcurrency"/> requests hold a body
/// (one slot each), at most <see cref="ServerSettings.IngestQueueLimit"/> more wait for a slot (up to
/// <see cref="ServerSettings.IngestQueueTimeout"/>, then 429), and any beyond are answered 429 at once. A request is
/// written into the engine only when the shard queues have room for all of it (<see cref="IngestAdmission"/>), so it
/// never waits on a full queue: a stalled engine (a slow sink, shards that cannot keep up) gets 503 instead.
/// </remarks>
internal sealed class IngestService : IDisposable
{
    /// <summary>The MessagePack media types accepted.</summary>
    public static readonly string[] MessagePackTypes = ["application/x-msgpack", "application/msgpack", "application/vnd.msgpack"];

    private readonly MetricsPipeline _pipeline;
    private readonly ServerSettings _settings;
    private readonly ServerMetrics _metrics;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly SemaphoreSlim _slots;
    private readonly ConcurrentBag<IngestLane> _lanes = [];
    private readonly IngestAdmission _admission;
    private int _entered;

    /// <summary>Creates the service.</summary>
    public IngestService(MetricsPipeline pipeline, ServerSettings settings, ServerMetrics metrics, IHostApplicationLifetime lifetime)
    {
        _pipeline = pipeline;
        _settings = settings;
        _metrics = metrics;
        _lifetime = lifetime;
        _slots = new SemaphoreSlim(settings.IngestConcurrency, settings.IngestConcurrency);
        _admission = new IngestAdmission(pipeline, settings.SaturationQueueFill, settings.IngestConcurrency);
        metrics.SetIngestGauges(this);
    }

    /// <summary>Ingest requests holding a slot now (reading, decoding or writing a body).</summary>
    public int InFlight => _settings.IngestConcurrency - _slots.CurrentCount;

    /// <summary>Ingest requests waiting for a slot now.</summary>
    public int Waiting => Math.Max(0, Volatile.Read(ref _entered) - InFlight);

    /// <summary>The estimated fill of the fullest shard queue, as admission sees it.</summary>
    public double QueueFill => _admission.Fill;

    /// <summary>Handles one ingest request.</summary>
    public async Task<IResult> HandleAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        bool json;
        string mediaType = (request.ContentType ?? string.Empty).Split(';')[0].Trim();
        if (MessagePackTypes.Contains(mediaType, StringComparer.OrdinalIgnoreCase))
        {
            json = false;
        }
        else if (string.Equals(mediaType, "application/json", StringComparison.OrdinalIgnoreCase))
        {
            json = true;
        }
        else
        {
            return Refuse("unsupported_media_type", StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"Content-Type '{mediaType}' is not accepted: use application/x-msgpack (docs/wire-format.md) or application/json.");
        }

        string encoding = request.Headers.ContentEncoding.ToString().Trim();
        bool gzip = string.Equals(encoding, "gzip", StringComparison.OrdinalIgnoreCase);
        if (!gzip && encoding.Length > 0 && !string.Equals(encoding, "identity", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse("unsupported_encoding", StatusCodes.Status415UnsupportedMediaType, "Unsupported content encoding",
                $"Content-Encoding '{encoding}' is not accepted: use gzip or none.");
        }

        // Before a byte of the body is read: a declared length beyond the limit is refused at once.
        long rawLimit = gzip ? _settings.MaxRequestBodyBytes : Math.Min(_settings.MaxRequestBodyBytes, _settings.MaxDecompressedBodyBytes);
        if (request.ContentLength > rawLimit)
        {
            return Refuse("body_too_large", StatusCodes.Status413PayloadTooLarge, "Request body too large",
                $"The body declares {request.ContentLength} bytes; at most {rawLimit} are accepted.");
        }

        if (_lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return Refuse("stopping", StatusCodes.Status503ServiceUnavailable, "Stopping", "The service is stopping.", retry: true);
        }

        if (_admission.IsSaturated())
        {
            return Saturated();
        }

        // Requests inside (holding or waiting for a slot) are bounded: beyond the slots and the waiting room, 429 at once.
        if (Interlocked.Increment(ref _entered) > _settings.IngestConcurrency + _settings.IngestQueueLimit)
        {
            Interlocked.Decrement(ref _entered);
            return Refuse("busy", StatusCodes.Status429TooManyRequests, "Too many ingest requests",
                $"All {_settings.IngestConcurrency} ingest slots are busy and {_settings.IngestQueueLimit} requests wait; retry after a moment.", retry: true);
        }

        try
        {
            if (!await _slots.WaitAsync(_settings.IngestQueueTimeout, context.RequestAborted).ConfigureAwait(false))
            {
                return Refuse("busy", StatusCodes.Status429TooManyRequests, "Too many ingest requests",
                    $"All {_settings.IngestConcurrency} ingest slots are busy; retry after a moment.", retry: true);
            }

            return await HandleInSlotAsync(context, request, json, gzip, rawLimit).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _entered);
        }
    }

    private async Task<IResult> HandleInSlotAsync(HttpContext context, HttpRequest request, bool json, bool gzip, long rawLimit)
    {
        try
        {
            if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
            {
                size.MaxRequestBodySize = rawLimit;
            }

            (byte[]? body, int length, long received, IResult? refusal) = await ReadBodyAsync(request, gzip, rawLimit, context.RequestAborted).ConfigureAwait(false);
            if (refusal is not null)
            {
                return refusal;
            }

            try
            {
                _metrics.CountBytes(received, length);
                return Write(body.AsMemory(0, length), json);
            }
            finally
            {
                _metrics.CountBufferBytes(-body!.Length);
                ArrayPool<byte>.Shared.Return(body);
            }
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>Whether the body's last eight bytes are the gzip trailer of <paramref name="decoded"/> (RFC 1952: CRC-32, then the length mod 2^32, little-endian).</summary>
    private static bool HasGzipTrailer(ReadOnlySpan<byte> tail, ReadOnlySpan<byte> decoded) =>
        tail.Length == 8
        && BinaryPrimitives.ReadUInt32LittleEndian(tail) == System.IO.Hashing.Crc32.HashToUInt32(decoded)
        && BinaryPrimitives.ReadUInt32LittleEndian(tail[4..]) == (uint)decoded.Length;

    private async Task<(byte[]? Body, int Length, long Received, IResult? Refusal)> ReadBodyAsync(HttpRequest request, bool gzip, long rawLimit, CancellationToken cancellationToken)
    {
        int decodedLimit = _settings.MaxDecompressedBodyBytes;
        var counting = new CountingStream(request.Body);
        System.IO.Stream source = gzip ? new GZipStream(counting, CompressionMode.Decompress, leaveOpen: true) : counting;
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Clamp(request.ContentLength ?? 64 * 1024, 4096, gzip ? 1 << 20 : Math.Min(rawLimit + 1, 1 << 24)));
        _metrics.CountBufferBytes(buffer.Length);
        int length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    byte[] larger = ArrayPool<byte>.Shared.Rent((int)Math.Min((long)buffer.Length * 2, (long)decodedLimit + 1));
                    _metrics.CountBufferBytes(larger.Length);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    _metrics.CountBufferBytes(-buffer.Length);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }

                int read = await source.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                length += read;
                if (counting.Count > rawLimit)
                {
                    return Fail("body_too_large", StatusCodes.Status413PayloadTooLarge, "Request body too large", $"The body is larger than {rawLimit} bytes.");
                }

                if (length > decodedLimit)
                {
                    return Fail(gzip ? "decompressed_too_large" : "body_too_large", StatusCodes.Status413PayloadTooLarge, "Request body too large",
                        gzip ? $"The body decompresses to more than {decodedLimit} bytes." : $"The body is larger than {decodedLimit} bytes.");
                }
            }

            if (length == 0)
            {
                return Fail("malformed", StatusCodes.Status400BadRequest, "Malformed body", "The body is empty.");
            }

            if (gzip && !HasGzipTrailer(counting.Tail, buffer.AsSpan(0, length)))
            {
                // The decoder stops at the end of the compressed data without looking at what follows: a body
                // cut inside its trailer, or with bytes after it, would otherwise pass.
                return Fail("bad_gzip", StatusCodes.Status400BadRequest, "Malformed body",
                    "The body is not one whole gzip member: its trailer (CRC-32 and length) is missing, does not match the data, or is followed by other bytes.");
            }

            byte[] body = buffer;
            buffer = null!;
            return (body, length, counting.Count, null);
        }
        catch (InvalidDataException)
        {
            return Fail("bad_gzip", StatusCodes.Status400BadRequest, "Malformed body", "The body is not valid gzip.");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Fail("body_too_large", StatusCodes.Status413PayloadTooLarge, "Request body too large", $"The body is larger than {rawLimit} bytes.");
        }
        catch (BadHttpRequestException e)
        {
            // Kestrel gave up on the body (too slow, or the client went away mid-body).
            return Fail("too_slow", e.StatusCode, "Request body not received", "The request body was not received in time.");
        }
        finally
        {
            if (gzip)
            {
                await source.DisposeAsync().ConfigureAwait(false);
            }

            if (buffer is not null)
            {
                _metrics.CountBufferBytes(-buffer.Length);
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        (byte[]?, int, long, IResult?) Fail(string reason, int status, string title, string detail) => (null, 0, counting.Count, Refuse(reason, status, title, detail));
    }

    private IResult Write(ReadOnlyMemory<byte> body, bool json)
    {
        Span<int> rejected = stackalloc int[Enum.GetValues<RejectReason>().Length + 1];
        int total;
        JsonPointBatch? batch = null;
        if (json)
        {
            batch = JsonPointBatch.Parse(body, _settings.MaxPointsPerRequest, _settings.MaxLabelsPerSeries, _settings.MaxStringBytes, out string? error);
            if (batch is null)
            {
                return Refuse("malformed", StatusCodes.Status400BadRequest, "Malformed body", "Malformed JSON point batch: " + error);
            }
        }

        // Admission by room: nothing of the request is written unless the shard queues can take all of it now,
        // so the write below never waits on a full queue (a body of another layout is refused by the decoder).
        int points = batch?.Metrics.Length ?? Math.Min(MessagePackPointCount.Read(body) ?? 0, _settings.MaxPointsPerRequest);
        int batches = _admission.BatchesFor(points);
        if (!_admission.TryReserve(batches))
        {
            return Saturated();
        }

        IngestLane lane = RentLane();
        try
        {
            if (batch is not null)
            {
                total = batch.Metrics.Length;
                for (int i = 0; i < total; i++)
                {
                    RejectReason reason = batch.Timestamps[i] is long ts
                        ? lane.Writer.Write(batch.Metrics[i], batch.Labels[i], batch.Values[i], ts)
                        : lane.Writer.Write(batch.Metrics[i], batch.Labels[i], batch.Values[i]);
                    if (reason != RejectReason.None)
                    {
                        rejected[(int)reason]++;
                    }
                }
            }
            else
            {
                PointDecodeResult result = lane.Decoder.Decode(body, lane.Writer, rejected);
                if (!result.Succeeded)
                {
                    return Refuse("malformed", StatusCodes.Status400BadRequest, "Malformed body", "Malformed MessagePack point batch (docs/wire-format.md): " + result.Describe() + ".");
                }

                total = result.Points;
            }

            lane.Writer.Flush();
        }
        finally
        {
            _lanes.Add(lane);
            _admission.Complete(batches);
        }

        int refused = 0;
        var reasons = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int r = 1; r < rejected.Length; r++)
        {
            if (rejected[r] > 0)
            {
                refused += rejected[r];
                reasons[((RejectReason)r).ToMetricLabel()] = rejected[r];
            }
        }

        _metrics.CountPoints(total - refused, rejected);
        return Results.Json(new IngestResponse(total - refused, refused, reasons));
    }

    private IngestLane RentLane()
    {
        if (_lanes.TryTake(out IngestLane? lane))
        {
            return lane;
        }

        // At most IngestConcurrency lanes exist: one per slot.
        PointWriter writer = _pipeline.CreateWriter("http", BackpressureMode.Wait);
        var decoder = new PointBatchDecoder(_pipeline.Registry, new PointDecoderLimits
        {
            MaxMessageBytes = _settings.MaxDecompressedBodyBytes,
            MaxPointsPerMessage = _settings.MaxPointsPerRequest,
            MaxLabelsPerSeries = _settings.MaxLabelsPerSeries,
            MaxStringBytes = _settings.MaxStringBytes,
            MaxCachedSeries = 100_000,
        });
        return new IngestLane(writer, decoder);
    }

    private RefusalResult Saturated() => Refuse("saturated", StatusCodes.Status503ServiceUnavailable, "Engine saturated",
        "The engine's shard queues are full (a slow sink, or shards that cannot keep up); retry after a moment.", retry: true);

    private RefusalResult Refuse(string reason, int status, string title, string detail, bool retry = false)
    {
        _metrics.CountRefused(reason);
        return new RefusalResult(Results.Problem(detail: detail, statusCode: status, title: title, extensions: new Dictionary<string, object?> { ["reason"] = reason }), retry);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        while (_lanes.TryTake(out IngestLane? lane))
        {
            lane.Dispose();
        }

        _slots.Dispose();
    }

    /// <summary>A problem answer, with Retry-After when the client should try again.</summary>
    private sealed class RefusalResult(IResult inner, bool retry) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            if (retry)
            {
                httpContext.Response.Headers.RetryAfter = "1";
            }

            return inner.ExecuteAsync(httpContext);
        }
    }
}
