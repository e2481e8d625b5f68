import type { DriveTwinApi } from '../preload/api';

declare global {
  interface Window {
    /** The only way out of the page: set by the Electron preload or by the bridge client. */
    driveTwin: DriveTwinApi;
  }
}

export {};
