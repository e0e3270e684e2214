import FerryTesting
import Foundation
import Testing

/// Executions the server starts by itself (schedules) and ends by itself (a restart).
@Suite struct ServerRunTests {
    /// An every-minute cron schedule fires and its execution succeeds; a disabled schedule
    /// does not fire; an empty expression removes the schedule. (The server is started with
    /// `--min-schedule-minutes 1`; by default, as DataSync, an hour is the shortest interval.)
    @Test func scheduleFires() async throws {
        let f = try Fixture("server-schedule")
        defer { f.cleanUp() }
        try f.source.file("a.txt", Array("scheduled\n".utf8))
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state", arguments: ["--min-schedule-minutes", "1"])
        defer { server.kill() }
        let (_, src, dst) = try server.nfsLocations(f)
        let enabled = try server.ok(["create-task", "--source-location-arn", src, "--destination-location-arn", dst,
                                     "--schedule", "ScheduleExpression=cron(* * * * ? *)"])["TaskArn"] as? String ?? ""
        let disabled = try server.ok(["create-task", "--source-location-arn", src, "--destination-location-arn", dst,
                                      "--schedule", "ScheduleExpression=rate(1 minute),Status=DISABLED"])["TaskArn"] as? String ?? ""
        let described = try server.ok(["describe-task", "--task-arn", enabled])
        #expect((described["Schedule"] as? [String: Any])?["Status"] as? String == "ENABLED", "\(described)")
        #expect((described["ScheduleDetails"] as? [String: Any])?["StatusUpdateTime"] != nil, "\(described)")

        func executions(_ task: String) -> [[String: Any]] {
            ((try? server.ok(["list-task-executions", "--task-arn", task]))?["TaskExecutions"] as? [[String: Any]]) ?? []
        }
        #expect(Fixture.waitUntil(seconds: 90) { !executions(enabled).isEmpty }, "the every-minute schedule fired")
        let fired = executions(enabled).first?["TaskExecutionArn"] as? String ?? ""
        #expect(server.waitForEnd(fired)["Status"] as? String == "SUCCESS")
        let arrived = try f.differencesBeyondNFS()
        #expect(arrived == [], "\(arrived)")
        #expect(executions(disabled).isEmpty, "a disabled schedule does not fire")

        _ = try server.ok(["update-task", "--task-arn", enabled, "--schedule", "ScheduleExpression="])
        #expect(try server.ok(["describe-task", "--task-arn", enabled])["Schedule"] == nil)
    }

    /// The default minimum interval is DataSync's hour.
    @Test func schedulesMoreOftenThanHourlyAreRefusedByDefault() async throws {
        let f = try Fixture("server-schedule-limit")
        defer { f.cleanUp() }
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let (_, src, dst) = try server.nfsLocations(f)
        for expression in ["rate(30 minutes)", "cron(*/10 * * * ? *)"] {
            let r = try server.aws(["create-task", "--source-location-arn", src, "--destination-location-arn", dst,
                                    "--schedule", "ScheduleExpression=\(expression)"])
            #expect(r.status != 0 && r.stderr.contains("InvalidRequestException") && r.stderr.contains("every 1 hour"), "\(expression): \(r.stderr)")
        }
        let hourly = try server.aws(["create-task", "--source-location-arn", src, "--destination-location-arn", dst,
                                     "--schedule", "ScheduleExpression=cron(15 * * * ? *)"])
        #expect(hourly.status == 0, "\(hourly.stderr)")
        #expect((try server.ok(["list-tasks"])["Tasks"] as? [Any])?.count == 1)
    }

    /// A cancelled execution removes the temporaries of the copies it interrupted and leaves
    /// nothing partial under a final name.
    @Test func cancelLeavesNoTemporaries() async throws {
        let f = try Fixture("server-cancel")
        defer { f.cleanUp() }
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let execution = try server.startMoving(try server.slowTask(f, bytesPerSecond: 524288).task)
        _ = try server.ok(["cancel-task-execution", "--task-execution-arn", execution])
        #expect(server.waitForEnd(execution)["Status"] as? String == "ERROR")
        #expect(try f.temporaries() == [])
        #expect(f.partialUnderFinalNames() == [])
    }

    /// A server killed (SIGKILL) while an execution transfers comes back with the execution
    /// in ERROR and a reason, never stuck; the next run completes the copy and removes the
    /// temporaries the killed one left.
    @Test func restartWhileRunningEndsTheExecutionInError() async throws {
        let f = try Fixture("server-restart")
        defer { f.cleanUp() }
        let data = f.destinationRoot + "-state"
        var server = try FerryServerProcess(dataDirectory: data)
        defer { server.kill() }
        let task = try server.slowTask(f, bytesPerSecond: 262144).task
        let first = try server.startMoving(task)
        server.kill()
        server = try FerryServerProcess(dataDirectory: data)
        let ended = try server.ok(["describe-task-execution", "--task-execution-arn", first])
        let result = ended["Result"] as? [String: Any] ?? [:]
        #expect(ended["Status"] as? String == "ERROR" && result["ErrorCode"] as? String == "ServerRestarted", "\(ended)")
        #expect((result["ErrorDetail"] as? String ?? "").contains("stopped while this execution was TRANSFERRING"), "\(result)")
        #expect(try server.ok(["describe-task", "--task-arn", task])["CurrentTaskExecutionArn"] as? String == first)

        let second = try server.ok(["start-task-execution", "--task-arn", task, "--override-options", "BytesPerSecond=-1"])["TaskExecutionArn"] as? String ?? ""
        #expect(server.waitForEnd(second)["Status"] as? String == "SUCCESS")
        let arrived = try f.differencesBeyondNFS()
        #expect(arrived == [], "\(arrived)")
        #expect(try f.temporaries() == [])
    }
}
