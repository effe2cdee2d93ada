using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Monitoring.Stream.Hosting.Instruments;

namespace Monitoring.Stream.Hosting.Http;

/// <summary>
/// Middleware that records <c>http_server_request_duration_seconds</c> (a histogram: its count is the
/// request count) by <c>method</c>, <c>route</c> (the endpoint's route template, never the raw path),
/// <c>status_code</c> and <c>status_class</c> (<c>2xx</c>…).
/// </summary>
public sealed class HttpRequestMetrics
{
    /// <summary>The metric name.</summary>
    public const string DurationMetric = "http_server_request_duration_seconds";

    private static readonly string[] s_classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    private readonly RequestDelegate _next;
    private readonly MetricHistogram _duration;
    private readonly HttpMetricsOptions _options;

    /// <summary>Creates the middleware.</summary>
    public HttpRequestMetrics(RequestDelegate next, MetricsCollector collector, HttpMetricsOptions options)
    {
        ArgumentNullException.ThrowIfNull(collector);
        ArgumentNullException.ThrowIfNull(options);
        _next = next;
        _options = options;
        string[] labels = options.IncludeRawPath ? ["method", "route", "status_code", "status_class", "path"] : ["method", "route", "status_code", "status_class"];
        _duration = collector.CreateHistogram(DurationMetric, labels, "Duration of HTTP requests served.", "s");
    }

    /// <summary>Runs the rest of the pipeline and records the request.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        long start = Stopwatch.GetTimestamp();
        bool failed = false;
        try
        {
            await _next(context).ConfigureAwait(false);
        }
        catch
        {
            failed = true;
            throw;
        }
        finally
        {
            // An exception that escapes the app becomes a 500 for the client, whatever the response said so far.
            int status = failed && !context.Response.HasStarted ? StatusCodes.Status500InternalServerError : context.Response.StatusCode;
            string route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? _options.UnmatchedRoute;
            string method = NormalizeMethod(context.Request.Method);
            string code = StatusCodeText(status);
            string statusClass = status is >= 100 and < 600 ? s_classes[(status / 100) - 1] : "other";
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (_options.IncludeRawPath)
            {
                _duration.Record(seconds, method, route, code, statusClass, context.Request.Path.Value ?? string.Empty);
            }
            else
            {
                _duration.Record(seconds, method, route, code, statusClass);
            }
        }
    }

    /// <summary>Known methods as they are; anything else as <c>_OTHER</c>, so a client cannot mint series with made-up methods.</summary>
    internal static string NormalizeMethod(string method) => method switch
    {
        _ when HttpMethods.IsGet(method) => HttpMethods.Get,
        _ when HttpMethods.IsPost(method) => HttpMethods.Post,
        _ when HttpMethods.IsPut(method) => HttpMethods.Put,
        _ when HttpMethods.IsDelete(method) => HttpMethods.Delete,
        _ when HttpMethods.IsPatch(method) => HttpMethods.Patch,
        _ when HttpMethods.IsHead(method) => HttpMethods.Head,
        _ when HttpMethods.IsOptions(method) => HttpMethods.Options,
        _ when HttpMethods.IsTrace(method) => HttpMethods.Trace,
        _ when HttpMethods.IsConnect(method) => HttpMethods.Connect,
        _ => "_OTHER",
    };

    private static string StatusCodeText(int status) => status switch
    {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        500 => "500",
        503 => "503",
        _ => status.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
